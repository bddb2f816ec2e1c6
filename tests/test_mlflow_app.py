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
