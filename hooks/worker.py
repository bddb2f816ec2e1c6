"""The worker: drains the durable queue, checks each new version, and reconciles missed deliveries periodically."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from fp_registry.records import UploadEvent

from .queue import Queue

log = logging.getLogger("fp_registry.worker")
Processor = Callable[[UploadEvent], Any]


def mlflow_processor(registry: str, config: dict[str, Any] | None = None) -> Processor:
    """Check (or auto-protect) one MLflow model version; a fresh backend per job keeps verdict ranking per job."""
    def process(event: UploadEvent) -> Any:
        from fp_registry.integrations.mlflow_backend import MlflowBackend
        from fp_registry.integrations.mlflow_ops import process_version

        return process_version(MlflowBackend(registry), event.name, event.version, config=config, event=event)
    return process


def run_once(queue: Queue, process: Processor) -> bool:
    """Process one due job; False if none was due."""
    job = queue.claim()
    if job is None:
        return False
    key, payload = job
    try:
        process(UploadEvent.from_dict(payload))
    except Exception as exc:  # any failure is retried with backoff, never lost
        log.warning("job %s failed: %s: %s", key, exc.__class__.__name__, str(exc)[:200])
        queue.fail(key, f"{exc.__class__.__name__}: {exc}")
    else:
        queue.done(key)
    return True


def reconcile_mlflow(queue: Queue, registry: str) -> int:
    """Enqueue every version without a verdict (MLflow's webhook delivery is at most once)."""
    from fp_registry.integrations.mlflow_backend import MlflowBackend
    from fp_registry.integrations.mlflow_ops import unchecked_versions

    from .upload_events import idempotency_key, version_key

    added = 0
    for name, version in unchecked_versions(MlflowBackend(registry)):
        event = UploadEvent("mlflow", name, version, f"models:/{name}/{version}", {"source": "reconcile"})
        if queue.has_open(version_key(event)):
            continue  # not checked yet because its job (from a webhook or an earlier sweep) is still waiting
        added += queue.enqueue(idempotency_key(event), event.to_dict())
    return added


def run_forever(queue: Queue, process: Processor, stop: threading.Event, poll_s: float = 0.5,
                reconcile: Callable[[], Any] | None = None, reconcile_every_s: float = 300.0) -> None:
    """Loop until ``stop`` is set; jobs a previous worker left running are taken up again."""
    queue.recover()
    last = 0.0
    while not stop.is_set():
        if reconcile is not None and time.time() - last > reconcile_every_s:
            last = time.time()
            try:
                reconcile()
            except Exception as exc:  # an unreachable server must not kill the worker
                log.warning("reconciliation failed: %s", str(exc)[:200])
        if not run_once(queue, process):
            stop.wait(poll_s)
