"""Webhook path end to end against a real ``mlflow server``: receiver, durable queue, worker, verdict tags."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("mlflow")
import torch  # noqa: E402

from conftest_mlflow import PY, fine_tuned, free_port, register, server_fixture, wait_for_tag  # noqa: E402

torch.set_num_threads(1)
SECRET = "test-webhook-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from server_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def alerts():
    """A sink for the alert plugin's JSON POSTs (FP_REGISTRY_ALERT_URL)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    old = os.environ.get("FP_REGISTRY_ALERT_URL")
    os.environ["FP_REGISTRY_ALERT_URL"] = f"http://127.0.0.1:{httpd.server_address[1]}/alert"
    yield received
    httpd.shutdown()
    if old is None:
        os.environ.pop("FP_REGISTRY_ALERT_URL", None)
    else:
        os.environ["FP_REGISTRY_ALERT_URL"] = old


@pytest.fixture(scope="module")
def receiver(server, tmp_path_factory, alerts):
    """``fpreg serve``'s app and worker in this process, subscribed to the server's model-version events."""
    import mlflow
    import uvicorn

    from fp_registry.hooks.queue import Queue
    from fp_registry.hooks.receiver import create_app
    from fp_registry.hooks.worker import mlflow_processor, run_forever

    queue = Queue(tmp_path_factory.mktemp("queue") / "q.db")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(queue, SECRET), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(queue, mlflow_processor(f"mlflow+{server}"), stop),
                     kwargs={"poll_s": 0.2}, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/webhooks/mlflow"
    mlflow.MlflowClient(server).create_webhook("fp-registry", url, events=["model_version.created"], secret=SECRET)
    yield {"queue": queue, "url": url}
    stop.set()
    srv.should_exit = True


@pytest.fixture(scope="module")
def owner(server, receiver):
    """The owner's model, auto-protected by the worker because its registered model asks for it."""
    import mlflow

    from fp_registry.scenarios import train_owner

    mlflow.MlflowClient(server).create_registered_model("owner", tags={"fp_registry.protect": "ipguard"})
    model = train_owner("digits-mlp", seed=0)
    version = register(server, "owner", model)
    tags = wait_for_tag(server, "owner", version, "fp_registry.protected", timeout=180)
    assert tags["fp_registry.method"] == "ipguard"
    return model


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_new_versions_get_verdict_tags(server, receiver, owner, alerts):
    from fp_registry.scenarios import train_owner

    ft = register(server, "suspect-ft", fine_tuned(owner))
    ind = register(server, "suspect-ind", train_owner("digits-mlp", seed=7))
    tags = wait_for_tag(server, "suspect-ft", ft, "fp_registry.verdict", timeout=120)
    assert tags["fp_registry.verdict"] == "match" and tags["fp_registry.matched"] == "owner/1"
    assert 0 <= float(tags["fp_registry.p_value"]) <= 1 and tags["fp_registry.method"] == "ipguard"
    tags = wait_for_tag(server, "suspect-ind", ind, "fp_registry.verdict", timeout=120)
    assert tags["fp_registry.verdict"] == "clean" and tags["fp_registry.matched"] == ""
    # the default verdict_ready plugin POSTs one alert per match, none for the clean model
    assert [(a["suspect"], a["matched"]) for a in alerts] == [(f"models:/suspect-ft/{ft}", "owner/1")]


def test_wrong_or_missing_signature_is_401_and_nothing_queued(receiver):
    from fp_registry.hooks.receiver import expected_signature

    deadline = time.time() + 60  # let the previous test's jobs finish, so only a forged delivery could change counts
    while set(receiver["queue"].counts()) & {"pending", "running"} and time.time() < deadline:
        time.sleep(0.2)
    before = receiver["queue"].counts()
    body = json.dumps({"entity": "model_version", "action": "created",
                       "data": {"name": "forged", "version": "1", "source": "models:/m-x"}}).encode()
    ts = str(int(time.time()))
    wrong = expected_signature("not-the-secret", "d1", ts, body)
    assert _post(receiver["url"], body, {}) == 401
    assert _post(receiver["url"], body, {"X-MLflow-Signature": wrong, "X-MLflow-Delivery-Id": "d1",
                                         "X-MLflow-Timestamp": ts}) == 401
    assert receiver["queue"].counts() == before


def test_duplicate_delivery_is_checked_once(receiver):
    from fp_registry.hooks.receiver import expected_signature

    body = json.dumps({"entity": "model_version", "action": "created",
                       "data": {"name": "dup", "version": "3", "source": "models:/m-dup"}}).encode()
    before = sum(receiver["queue"].counts().values())
    for delivery in ("a", "b"):  # MLflow gives each retry a new delivery id
        ts = str(int(time.time()))
        sig = expected_signature(SECRET, delivery, ts, body)
        assert _post(receiver["url"], body, {"X-MLflow-Signature": sig, "X-MLflow-Delivery-Id": delivery,
                                             "X-MLflow-Timestamp": ts}) == 200
    assert sum(receiver["queue"].counts().values()) == before + 1


def test_burst_of_50_registrations_all_get_verdicts(server, receiver, owner):
    import mlflow

    c = mlflow.MlflowClient(server)
    ft = register(server, "burst", fine_tuned(owner, seed=11))
    source = c.get_model_version("burst", ft).source
    versions = [c.create_model_version("burst", source=source, model_id=source.split("/")[-1],
                                           await_creation_for=0).version for _ in range(49)]
    labels = [wait_for_tag(server, "burst", v, "fp_registry.verdict", timeout=300)["fp_registry.verdict"]
              for v in [ft, *versions]]
    assert labels == ["match"] * 50


def test_worker_killed_mid_check_finishes_after_restart(server, owner, tmp_path):
    import mlflow

    from fp_registry.hooks.queue import Queue
    from fp_registry.hooks.upload_events import idempotency_key
    from fp_registry.records import UploadEvent

    c = mlflow.MlflowClient(server)
    source = c.get_model_version("owner", "1").source
    queue = Queue(tmp_path / "q.db")
    c.create_registered_model("killed")
    versions = [c.create_model_version("killed", source=source, model_id=source.split("/")[-1]).version
                for _ in range(4)]
    for v in versions:
        event = UploadEvent("mlflow", "killed", v, f"models:/killed/{v}", {"source": "test"})
        queue.enqueue(idempotency_key(event), event.to_dict())
    cmd = [str(PY.parent / "fpreg"), "mlflow", "worker", "-r", f"mlflow+{server}", "--queue", str(tmp_path / "q.db")]
    worker = subprocess.Popen(cmd, env=os.environ.copy(), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while queue.counts().get("running", 0) == 0 and time.time() < deadline:
        time.sleep(0.05)
    worker.kill()  # SIGKILL: no cleanup, the running job stays 'running' in the queue
    worker.wait()
    assert queue.counts().get("done", 0) < len(versions)
    worker = subprocess.Popen(cmd, env=os.environ.copy(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while queue.counts() != {"done": len(versions)} and time.time() < deadline:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(10)
    assert queue.counts() == {"done": len(versions)}
    for v in versions:  # (the receiver's worker may have tagged some of them too: both are idempotent)
        assert wait_for_tag(server, "killed", v, "fp_registry.verdict")["fp_registry.verdict"] == "match"


def test_unreachable_server_keeps_the_job_queued(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from fp_registry.hooks.queue import Queue
    from fp_registry.hooks.worker import mlflow_processor, run_once
    from fp_registry.records import UploadEvent

    queue = Queue(tmp_path / "q.db")
    event = UploadEvent("mlflow", "m", "1", "models:/m/1", {})
    queue.enqueue("k", event.to_dict())
    assert run_once(queue, mlflow_processor(f"mlflow+http://127.0.0.1:{free_port()}"))
    assert queue.status("k") == "pending"  # retried later with backoff, not lost
    with queue._db() as db:
        (error,) = db.execute("SELECT error FROM jobs WHERE key='k'").fetchone()
    assert "MLflow at http://127.0.0.1:" in error and "failed" in error
