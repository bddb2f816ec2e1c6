"""Turn MLflow webhook payloads into UploadEvents, recognising test deliveries and our own tag events."""
from __future__ import annotations

from typing import Any

from fp_registry.records import UploadEvent

OWN_TAG_PREFIX = "fp_registry."
# MLflow's test delivery carries this fixed example payload and no test flag (integrations.md §1.1).
TEST_PAYLOAD = {"name": "example_model", "source": "models:/123"}


def is_test_delivery(data: dict[str, Any]) -> bool:
    return all(data.get(k) == v for k, v in TEST_PAYLOAD.items())


def mlflow_event(payload: dict[str, Any]) -> UploadEvent | None:
    """A model_version.created delivery -> UploadEvent; anything else (tags, aliases, tests) -> None."""
    if (payload.get("entity"), payload.get("action")) != ("model_version", "created"):
        return None  # includes model_version_tag.set for our own fp_registry.* tags: never loop
    data = payload.get("data") or {}
    if is_test_delivery(data) or not data.get("name") or not data.get("version"):
        return None
    name, version = str(data["name"]), str(data["version"])
    return UploadEvent("mlflow", name, version, f"models:/{name}/{version}",
                       {"source": data.get("source") or "", "run_id": data.get("run_id")})


def version_key(event: UploadEvent) -> str:
    """The start every queue key of this version shares, whatever source (webhook, reconciliation) queued it."""
    return f"mlflow:{event.name}:{event.version}:"


def idempotency_key(event: UploadEvent) -> str:
    """One check per (name, version, source): redeliveries of the same version are dropped."""
    return version_key(event) + str(event.payload.get("source", ""))
