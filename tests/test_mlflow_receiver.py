"""The webhook receiver, the durable queue and the worker (with a recording processor, no MLflow server)."""
from __future__ import annotations

import json
import time
import uuid

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fp_registry.hooks.queue import Queue  # noqa: E402
from fp_registry.hooks.receiver import create_app, expected_signature  # noqa: E402
from fp_registry.hooks.worker import run_once  # noqa: E402

SECRET = "s3cret"


def delivery(name: str = "m", version: str = "1", entity: str = "model_version", action: str = "created",
             secret: str | None = SECRET, ts: int | None = None, **data: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"entity": entity, "action": action, "timestamp": "2026-11-23T00:00:00+00:00",
                       "data": {"name": name, "version": version, "source": f"models:/m-{name}{version}",
                                "run_id": None, "tags": {}, **data}}).encode()
    did, stamp = str(uuid.uuid4()), str(ts if ts is not None else int(time.time()))
    headers = {"X-MLflow-Delivery-Id": did, "X-MLflow-Timestamp": stamp, "Content-Type": "application/json"}
    if secret is not None:
        headers["X-MLflow-Signature"] = expected_signature(secret, did, stamp, body)
    return body, headers


@pytest.fixture
def queue(tmp_path):
    return Queue(tmp_path / "q.db", backoff_s=0.0)


@pytest.fixture
def client(queue):
    return TestClient(create_app(queue, SECRET))


def post(client, body, headers):
    return client.post("/webhooks/mlflow", content=body, headers=headers)


@pytest.mark.parametrize("secret,ts", [(None, None), ("wrong", None), (SECRET, int(time.time()) - 3600)])
def test_bad_or_stale_signature_is_401_and_nothing_queued(client, queue, secret, ts):
    body, headers = delivery(secret=secret, ts=ts)
    assert post(client, body, headers).status_code == 401
    assert queue.counts() == {}


def test_tampered_body_is_401(client, queue):
    body, headers = delivery()
    assert post(client, body.replace(b'"m"', b'"x"'), headers).status_code == 401
    assert queue.counts() == {}


def test_duplicate_delivery_is_checked_once(client, queue):
    for _ in range(3):  # MLflow retries create a new delivery id each time
        body, headers = delivery("dup", "4")
        assert post(client, body, headers).status_code == 200
    seen = []
    while run_once(queue, seen.append):
        pass
    assert [(e.name, e.version) for e in seen] == [("dup", "4")]


def test_own_tag_events_and_test_deliveries_are_ignored(client, queue):
    body, headers = delivery(entity="model_version_tag", action="set", key="fp_registry.verdict", value="match")
    assert post(client, body, headers).json()["status"] == "ignored"
    raw = json.dumps({"entity": "model_version", "action": "created", "data": {
        "name": "example_model", "version": "1", "source": "models:/123", "run_id": "abcd1234abcd5678"}}).encode()
    did, ts = "d", str(int(time.time()))
    headers = {"X-MLflow-Delivery-Id": did, "X-MLflow-Timestamp": ts,
               "X-MLflow-Signature": expected_signature(SECRET, did, ts, raw)}
    assert post(client, raw, headers).json()["status"] == "ignored"
    assert queue.counts() == {}


def test_queue_survives_a_worker_dying_mid_job(tmp_path):
    path = tmp_path / "q.db"
    q = Queue(path)
    assert q.enqueue("k1", {"source": "mlflow", "name": "a", "version": "1", "model_uri": "models:/a/1"})
    assert q.claim() is not None  # the worker takes it ... and dies before finishing
    restarted = Queue(path)  # a new process opens the same file
    assert restarted.claim() is None  # still leased to the dead worker
    assert restarted.recover() == 1
    seen = []
    assert run_once(restarted, seen.append) and [e.name for e in seen] == ["a"]
    assert restarted.status("k1") == "done"


def test_failures_retry_with_backoff_then_give_up(tmp_path):
    q = Queue(tmp_path / "q.db", max_attempts=2, backoff_s=0.0)
    q.enqueue("k", {"source": "mlflow", "name": "a", "version": "1", "model_uri": "models:/a/1"})

    def boom(event):
        raise ConnectionError("tracking server down")

    assert run_once(q, boom) and q.status("k") == "pending"  # kept for a retry, not lost
    assert run_once(q, boom) and q.status("k") == "dead"
