"""Protecting an owner's own model (wine, which no scenario covers) in a real ``mlflow server``: its data as a
run artifact, its reference models as registered versions, named by tags or on the command line."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
import torch  # noqa: E402

from conftest_mlflow import register_model_version, server_fixture  # noqa: E402

torch.set_num_threads(1)
#: the example's helpers: a wine classifier (the owner's own task) and its data logged to a run
EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "protect_own_model.py"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from server_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def wine(server, tmp_path_factory):
    """Owner, three reference versions, the owner data logged to a run, and a corrupt .npz beside it."""
    import mlflow

    from fp_registry.data import load_data_arg

    x, y = load_data_arg("wine")
    tmp = tmp_path_factory.mktemp("owner")
    data = EXAMPLE["log_owner_data"](server, x, y, tmp)
    (tmp / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    with mlflow.start_run(run_id=data.split("/")[1]):
        mlflow.log_artifact(str(tmp / "corrupt.npz"), artifact_path="owner_data")
    example = torch.from_numpy(x[:2])
    refs = [f"models:/wine-ref/{register_model_version(server, 'wine-ref', EXAMPLE['wine_model'](s, x, y), example)}"
            for s in (1, 2, 3)]
    return {"npz": str(tmp / "wine.npz"), "data": data, "corrupt": data.replace("wine.npz", "corrupt.npz"),
            "refs": refs, "owner": EXAMPLE["wine_model"](0, x, y), "example": example}


def _backend(server: str):
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    return MlflowBackend(f"mlflow+{server}")


def test_tags_name_the_owner_data_and_references(server, tmp_path):
    import mlflow

    rows = EXAMPLE["run"](server, tmp_path)  # the example: protect through tags, then a copy and an independent
    assert [r["verdict"] for r in rows] == ["skipped", "match", "clean"], rows
    owner = rows[0]["version"].split("/")[-1]
    tags = dict(mlflow.MlflowClient(server).get_model_version("wine-classifier", owner).tags)
    assert tags["fp_registry.protected"] == "true" and tags["fp_registry.verdict"] == "skipped"
    backend = _backend(server)
    [entry] = [e for e in backend.entries() if e.model_uri == f"models:/wine-classifier/{owner}"]
    assert len(backend.load(entry).calibration.negative_scores) == 3  # the three named references
    copy = dict(mlflow.MlflowClient(server).get_model_version("pirate-wine-finetuned", "1").tags)
    assert copy["fp_registry.verdict"] == "match" and copy["fp_registry.matched"] == f"wine-classifier/{owner}"


@pytest.mark.parametrize("case, expected", [("missing", "cannot download owner data"),
                                            ("corrupt", "is not a readable .npz"),
                                            ("no references", "fp_registry.negatives"),
                                            ("unknown reference", "reference model models:/no-such-model/1"),
                                            ("local file", "names a file of the worker's machine"),
                                            ("local reference", "reference /tmp/ref names a file")])
def test_a_wrong_tag_leaves_an_error_verdict_and_no_fingerprint(server, wine, case, expected):
    import mlflow

    from fp_registry.integrations.mlflow_ops import process_version, unchecked_versions

    data = {"missing": "runs:/0123456789abcdef/owner_data/wine.npz", "corrupt": wine["corrupt"],
            "local file": wine["npz"]}.get(case, wine["data"])
    tags = {"fp_registry.protect": "ipguard", "fp_registry.data": data}
    if case != "no references":
        bad = {"unknown reference": ["models:/no-such-model/1"], "local reference": ["/tmp/ref"]}
        refs = bad.get(case, wine["refs"])
        tags["fp_registry.negatives"] = ",".join(refs)
    name = f"wine-{case.replace(' ', '-')}"
    mlflow.MlflowClient(server).create_registered_model(name, tags=tags)
    version = register_model_version(server, name, wine["owner"], wine["example"])
    backend = _backend(server)
    [v] = process_version(backend, name, version)
    assert v.label == "error" and expected in v.evidence["error"] and "\n" not in v.evidence["error"]
    assert f"fpreg mlflow protect {name}/{version}" in v.evidence["error"]
    mv = dict(mlflow.MlflowClient(server).get_model_version(name, version).tags)
    assert mv["fp_registry.verdict"] == "error" and expected in mv["fp_registry.reason"]
    assert "fp_registry.protected" not in mv and all(name not in e.model_uri for e in backend.entries())
    assert (name, version) not in unchecked_versions(backend)  # the error verdict stops reconciliation retries


def test_cli_protects_with_a_local_npz_and_named_references(server, wine, capsys):
    import mlflow

    from fp_registry.cli import run

    version = register_model_version(server, "wine-cli", wine["owner"], wine["example"])
    capsys.readouterr()  # MLflow's own registration messages
    args = ["mlflow", "protect", f"wine-cli/{version}", "-r", f"mlflow+{server}", "--data", wine["npz"]]
    assert run(args) == 4  # USAGE: own data without references is refused, with the next step on one line
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--negative MODEL" in err and "fp_registry.negatives" in err
    assert run(args + [a for r in wine["refs"] for a in ("--negative", r)]) == 0
    assert f"on data {wine['npz']}" in capsys.readouterr().out
    tags = dict(mlflow.MlflowClient(server).get_model_version("wine-cli", version).tags)
    assert tags["fp_registry.protected"] == "true" and tags["fp_registry.task"] == "classification"
