"""``mlflow server --app-name fp-registry``: enqueue a check for every model version created through the server."""
from __future__ import annotations

import json
import os
import threading
from typing import Any

CREATE_PATH = "/mlflow/model-versions/create"
_started: list[threading.Thread] = []


def _queue() -> Any:
    from fp_registry.hooks.queue import Queue

    return Queue(os.environ.get("FP_REGISTRY_QUEUE", "fp_registry_queue.db"))


def _process(event: Any) -> Any:
    """Check one version against the server that announced it (its URL travels in the job payload)."""
    from fp_registry.hooks.worker import mlflow_processor

    registry = "mlflow+" + str(event.payload.get("registry", "http://127.0.0.1:5000")).rstrip("/")
    return mlflow_processor(registry)(event)


def _start_worker() -> None:
    # One worker thread per server process; claims are atomic in sqlite, so several processes share the queue.
    if _started or os.environ.get("FP_REGISTRY_APP_WORKER", "1") == "0":
        return
    from fp_registry.hooks.worker import run_forever

    t = threading.Thread(target=run_forever, args=(_queue(), _process, threading.Event()), daemon=True,
                         name="fp-registry-worker")
    t.start()
    _started.append(t)


def create_app(app: Any = None) -> Any:
    """The app factory MLflow calls; returns MLflow's own app with an ``after_request`` hook added."""
    from flask import request

    if app is None:
        from mlflow.server import app as mlflow_app

        app = mlflow_app

    @app.after_request
    def _after(resp: Any) -> Any:
        if request.method == "POST" and request.path.endswith(CREATE_PATH) and resp.status_code == 200:
            try:
                _enqueue(json.loads(resp.get_data())["model_version"], request.host_url)
            except Exception as exc:  # never break the registry request because of us
                app.logger.warning("fp-registry could not enqueue a check: %s", exc)
        return resp

    _start_worker()
    if os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":  # MLflow 3.x default server, as basic-auth does
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


def _enqueue(mv: dict[str, Any], host_url: str) -> None:
    from fp_registry.hooks.upload_events import idempotency_key
    from fp_registry.records import UploadEvent

    name, version = str(mv["name"]), str(mv["version"])
    event = UploadEvent("mlflow", name, version, f"models:/{name}/{version}",
                        {"source": mv.get("source", ""), "run_id": mv.get("run_id"), "registry": host_url})
    _queue().enqueue(idempotency_key(event), event.to_dict())
