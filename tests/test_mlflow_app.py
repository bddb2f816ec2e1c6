"""The mlflow.app plugin's after_request hook, on a stand-in Flask app (no MLflow server started)."""
from __future__ import annotations

import pytest

flask = pytest.importorskip("flask")


def test_version_creation_enqueues_one_check(tmp_path, monkeypatch):
    from fp_registry.hooks.queue import Queue
    from fp_registry.integrations.mlflow_app import create_app

    monkeypatch.setenv("FP_REGISTRY_QUEUE", str(tmp_path / "q.db"))
    monkeypatch.setenv("FP_REGISTRY_APP_WORKER", "0")
    monkeypatch.delenv("_MLFLOW_SGI_NAME", raising=False)
    app = flask.Flask("stand-in")

    @app.post("/api/2.0/mlflow/model-versions/create")
    def create():
        return {"model_version": {"name": "m", "version": "3", "source": "models:/m-1", "run_id": "r"}}

    @app.post("/api/2.0/mlflow/model-versions/set-tag")
    def set_tag():
        return {}

    client = create_app(app).test_client()
    for _ in range(2):
        assert client.post("/api/2.0/mlflow/model-versions/create").status_code == 200
    assert client.post("/api/2.0/mlflow/model-versions/set-tag").status_code == 200
    q = Queue(tmp_path / "q.db")
    assert q.counts() == {"pending": 1}
    key, payload = q.claim()
    assert (payload["name"], payload["version"]) == ("m", "3")
    assert payload["payload"]["registry"].startswith("http://localhost")


def test_reconciliation_skips_versions_whose_check_is_still_open(tmp_path, monkeypatch):
    """A sweep must not queue a second check of a version whose webhook job has not run yet (or is running)."""
    from fp_registry.hooks import worker
    from fp_registry.hooks.queue import Queue
    from fp_registry.integrations import mlflow_ops

    q = Queue(tmp_path / "q.db")
    q.enqueue("mlflow:m:1:webhook", {"name": "m", "version": "1"})
    q.enqueue("mlflow:m:2:webhook", {"name": "m", "version": "2"})
    q.done(q.claim()[0])  # m/1 checked (its tag may still be on its way), m/2 waiting
    q.enqueue("mlflow:m:20:webhook", {"name": "m", "version": "20"})  # a prefix of another key must not count
    monkeypatch.setattr(mlflow_ops, "unchecked_versions", lambda backend: [("m", "1"), ("m", "2"), ("m", "3")])
    monkeypatch.setattr("fp_registry.integrations.mlflow_backend.MlflowBackend", lambda uri: None)
    assert worker.reconcile_mlflow(q, "mlflow+http://unused") == 2  # m/1 (done, still untagged) and m/3
    assert q.status("mlflow:m:1:reconcile") == "pending" and q.status("mlflow:m:3:reconcile") == "pending"
    assert q.status("mlflow:m:2:reconcile") is None
