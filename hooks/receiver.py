"""``fpreg serve`` receiver: MLflow registry webhooks, HMAC-verified in constant time, enqueued idempotently."""
# No `from __future__ import annotations`: FastAPI must see the real Request type of the local import.

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from .queue import Queue
from .upload_events import idempotency_key, mlflow_event

MAX_AGE_S = 300  # MLflow enforces no window; 5 minutes bounds replay of a captured delivery


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    msg = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Any, body: bytes, now: float | None = None, max_age: int = MAX_AGE_S) -> str | None:
    """None if the delivery is authentic and fresh, else the reason it is not."""
    sig, did, ts = (headers.get("x-mlflow-signature"), headers.get("x-mlflow-delivery-id"),
                    headers.get("x-mlflow-timestamp"))
    if not (sig and did and ts):
        return "missing signature headers"
    if not hmac.compare_digest(expected_signature(secret, did, ts, body).encode(), sig.encode()):
        return "bad signature"
    try:
        age = abs((now or time.time()) - int(ts))
    except ValueError:
        return "bad timestamp"
    return "stale timestamp" if age > max_age else None


def create_app(queue: Queue, secret: str, max_age: int = MAX_AGE_S, hf_secret: str = "") -> Any:
    """The FastAPI app: ``POST /webhooks/mlflow``, ``GET /health`` and, with ``hf_secret``, ``POST /webhooks/hf``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    if not secret:
        raise ValueError("a webhook secret is required (FP_REGISTRY_WEBHOOK_SECRET)")
    app = FastAPI(title="fp-registry receiver")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "queue": queue.counts()}

    @app.post("/webhooks/mlflow")
    async def mlflow_hook(request: Request) -> Any:
        body = await request.body()  # the raw bytes: the signature covers them, not re-serialised JSON
        reason = verify(secret, request.headers, body, max_age=max_age)
        if reason:
            return JSONResponse({"error": reason}, status_code=401)
        try:
            event = mlflow_event(json.loads(body))
        except (json.JSONDecodeError, AttributeError):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        if event is None:
            return {"status": "ignored"}
        added = queue.enqueue(idempotency_key(event), event.to_dict())
        return {"status": "queued" if added else "duplicate"}

    if hf_secret:
        add_hf_route(app, queue, hf_secret)
    return app


def add_hf_route(app: Any, queue: Queue, secret: str) -> None:
    """``POST /webhooks/hf``: Hub deliveries; ``X-Webhook-Secret`` compared in constant time, replays dropped."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from . import hub_events

    @app.post("/webhooks/hf")
    async def hf_hook(request: Request) -> Any:
        if not hub_events.secret_ok(request.headers.get("x-webhook-secret"), secret):
            return JSONResponse({"error": "bad or missing X-Webhook-Secret"}, status_code=403)
        try:
            event = hub_events.hub_event(json.loads(await request.body()))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        if event is None:
            return {"status": "ignored"}
        added = queue.enqueue(hub_events.idempotency_key(event), event.to_dict())
        return {"status": "queued" if added else "duplicate"}
