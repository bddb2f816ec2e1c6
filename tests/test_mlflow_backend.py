"""The MLflow backend against a real ``mlflow server``: protect, load models:/ URIs, check, tag verdicts, sync."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("mlflow")
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from conftest_mlflow import fine_tuned, register, server_fixture  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from server_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def registered(server):
    from fp_registry.scenarios import train_owner

    owner = train_owner("digits-mlp", seed=0)
    return {"owner": register(server, "owner", owner), "ft": register(server, "suspect-ft", fine_tuned(owner)),
            "ind": register(server, "suspect-ind", train_owner("digits-mlp", seed=7))}


def test_protect_check_and_tags(server, registered):
    import mlflow

    from fp_registry.integrations.mlflow_cli import mlflow_group
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    runner = CliRunner()
    res = runner.invoke(mlflow_group, ["protect", f"owner/{registered['owner']}", "--method", "ipguard",
                              "-r", f"mlflow+{server}"])
    assert res.exit_code == 0, res.output
    c = mlflow.MlflowClient(server)
    tags = dict(c.get_model_version("owner", registered["owner"]).tags)
    assert tags["fp_registry.protected"] == "true" and tags["fp_registry.method"] == "ipguard"
    backend = MlflowBackend(f"mlflow+{server}")
    [entry] = backend.entries()
    assert backend.load(entry).digest == tags["fp_registry.digest"]

    res = runner.invoke(mlflow_group, ["check", "suspect-ft/1", "-r", f"mlflow+{server}"])
    assert res.exit_code == 1, res.output  # a match exits 1
    ft = dict(c.get_model_version("suspect-ft", "1").tags)
    assert ft["fp_registry.verdict"] == "match" and ft["fp_registry.matched"] == f"owner/{registered['owner']}"
    assert float(ft["fp_registry.score"]) >= 0 and ft["fp_registry.checked_at"]

    res = runner.invoke(mlflow_group, ["sync", "-r", f"mlflow+{server}"])  # only suspect-ind is left
    assert res.exit_code == 0, res.output
    assert "1 version(s) without a verdict" in res.output
    ind = dict(c.get_model_version("suspect-ind", "1").tags)
    assert ind["fp_registry.verdict"] == "clean" and ind["fp_registry.matched"] == ""


def test_models_uri_loads_pt2_and_alias(server, registered):
    import os

    import mlflow
    from torch import nn

    from fp_registry.loading import load_model

    mlflow.MlflowClient(server).set_registered_model_alias("suspect-ind", "audited", "1")
    os.environ["MLFLOW_TRACKING_URI"] = server
    model = load_model("models:/suspect-ind@audited")
    assert isinstance(model, nn.Module)
    assert model(torch.zeros(3, 64)).shape == (3, 10)


def test_tampered_digest_is_refused(server, registered):
    from fp_registry.errors import ArtifactError, FpRegistryError
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    backend = MlflowBackend(f"mlflow+{server}")
    entries = backend.entries()
    if not entries:
        pytest.skip("needs the protect test first")
    bad = type(entries[0])(**{**entries[0].to_dict(), "digest": "0" * 64})
    with pytest.raises((ArtifactError, FpRegistryError)):
        backend.load(bad)


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from fp_registry.errors import BackendError
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    from conftest_mlflow import free_port

    with pytest.raises(BackendError, match=r"MLflow at http://127.0.0.1:\d+: search_model_versions failed"):
        MlflowBackend(f"mlflow+http://127.0.0.1:{free_port()}").entries()


def test_served_model_is_checked_over_http(server, registered, tmp_path):
    """``mlflow models serve`` as a pure black box: ``fpreg verify FP http://HOST:PORT/invocations``."""
    import os
    import subprocess
    import time
    import urllib.request

    from fp_registry.cli import cli
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    from conftest_mlflow import PY, free_port

    backend = MlflowBackend(f"mlflow+{server}")
    if not backend.entries():
        pytest.skip("needs the protect test first")
    backend.load(backend.entries()[0]).save(tmp_path / "fp")
    port = free_port()
    # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "PATH": f"{PY.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(PY.parent / "mlflow"), "models", "serve", "-m", "models:/suspect-ft/1",
                             "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow models serve did not come up (exit code {proc.poll()})")
        res = CliRunner().invoke(cli, ["verify", str(tmp_path / "fp"), f"http://127.0.0.1:{port}/invocations",
                                       "--json"])
    finally:
        proc.terminate()
        proc.wait(20)
    assert res.exit_code == 1, res.output  # the served fine-tuned copy matches
    assert json.loads(res.stdout)["verdict"] == "match"


def test_deepcore_protects_a_version_stored_as_a_program(server, registered):
    """MLflow keeps torch models as pt2 programs, which cannot be retrained: DeepCore's no-zoo path (scenario
    references, prunings of the program itself) must still protect them. Runs last: it adds a second entry."""
    import mlflow

    from fp_registry.integrations.mlflow_backend import MlflowBackend
    from fp_registry.integrations.mlflow_cli import mlflow_group
    from fp_registry.integrations.mlflow_ops import check_version
    from fp_registry.scenarios import train_owner
    from fp_registry.zoo.attacks import prune

    owner = train_owner("digits-mlp", seed=3)
    version = register(server, "owner-dc", owner)
    pruned = register(server, "suspect-pruned", prune(owner, None, ratio=0.3))
    res = CliRunner().invoke(mlflow_group, ["protect", f"owner-dc/{version}", "--method", "deepcore",
                                            "-r", f"mlflow+{server}"])
    assert res.exit_code == 0, res.output
    tags = dict(mlflow.MlflowClient(server).get_model_version("owner-dc", version).tags)
    assert tags["fp_registry.protected"] == "true" and tags["fp_registry.method"] == "deepcore"
    backend = MlflowBackend(f"mlflow+{server}")
    by_method = {v.method: v for v in check_version(backend, "suspect-pruned", pruned)}
    assert by_method["deepcore"].is_match
    assert not {v.method: v for v in check_version(backend, "suspect-ind", "1")}["deepcore"].is_match
