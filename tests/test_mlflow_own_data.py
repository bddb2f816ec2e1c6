"""Protecting an owner's own model (wine, which no scenario covers) in a real ``mlflow server``: its data as a
run artifact, its reference models as registered versions, named by tags or on the command line."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlflow")
import torch  # noqa: E402

from conftest_mlflow import register_model_version, server_fixture  # noqa: E402

torch.set_num_threads(1)
WINE_MLP = {"in_features": 13, "hidden": [32], "out_features": 3}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from server_fixture(tmp_path_factory)


def _wine_model(seed: int, x: np.ndarray, y: np.ndarray, parent: torch.nn.Module | None = None) -> torch.nn.Module:
    """A wine classifier trained from seed ``seed``, or ``parent`` fine-tuned for two epochs (a copy)."""
    import copy

    from fp_registry import nets
    from fp_registry.training import fit

    torch.manual_seed(seed)
    model = copy.deepcopy(parent) if parent is not None else nets.build("mlp", WINE_MLP)
    return fit(model, "classification", torch.from_numpy(x), torch.from_numpy(y), epochs=2 if parent else 40,
               lr=1e-3 if parent else 1e-2, seed=seed)


@pytest.fixture(scope="module")
def wine(server, tmp_path_factory):
    """Owner, three reference versions, a copy and an independent model; the owner data logged to a run."""
    import mlflow

    from fp_registry.data import load_data_arg

    x, y = load_data_arg("wine")
    path = tmp_path_factory.mktemp("owner") / "wine.npz"
    np.savez(path, X=x, y=y)
    mlflow.set_tracking_uri(server)
    corrupt = path.with_name("corrupt.npz")
    corrupt.write_bytes(b"PK\x03\x04 not a zip archive")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(path), artifact_path="owner_data")
        mlflow.log_artifact(str(corrupt), artifact_path="owner_data")
    owner = _wine_model(0, x, y)
    example = torch.from_numpy(x[:2])
    refs = [f"models:/wine-ref/{register_model_version(server, 'wine-ref', _wine_model(s, x, y), example)}"
            for s in (1, 2, 3)]
    return {"x": x, "y": y, "npz": str(path), "data": f"runs:/{run.info.run_id}/owner_data/wine.npz",
            "corrupt": f"runs:/{run.info.run_id}/owner_data/corrupt.npz",
            "refs": refs, "owner": owner, "example": example,
            "copy": register_model_version(server, "wine-copy", _wine_model(5, x, y, parent=owner), example),
            "ind": register_model_version(server, "wine-ind", _wine_model(9, x, y), example)}


def _backend(server: str):
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    return MlflowBackend(f"mlflow+{server}")


def test_tags_name_the_owner_data_and_references(server, wine):
    import mlflow

    from fp_registry.integrations.mlflow_ops import check_version, process_version

    c = mlflow.MlflowClient(server)
    c.create_registered_model("wine-owner", tags={"fp_registry.protect": "ipguard", "fp_registry.data": wine["data"],
                                                  "fp_registry.negatives": ",".join(wine["refs"])})
    version = register_model_version(server, "wine-owner", wine["owner"], wine["example"])
    [v] = process_version(_backend(server), "wine-owner", version)
    assert v.status == "skipped" and v.evidence["reason"] == f"protected with ipguard on data {wine['data']}"
    tags = dict(c.get_model_version("wine-owner", version).tags)
    assert tags["fp_registry.protected"] == "true" and tags["fp_registry.verdict"] == "skipped"

    [copy] = check_version(_backend(server), "wine-copy", wine["copy"])
    [ind] = check_version(_backend(server), "wine-ind", wine["ind"])
    assert copy.label == "match" and ind.label == "clean", (copy.score, ind.score, copy.threshold)
    [entry] = [e for e in _backend(server).entries() if e.model_uri == f"models:/wine-owner/{version}"]
    assert len(_backend(server).load(entry).calibration.negative_scores) == 3  # the three named references


@pytest.mark.parametrize("case, expected", [("missing", "cannot download owner data"),
                                            ("corrupt", "is not a readable .npz"),
                                            ("no references", "fp_registry.negatives"),
                                            ("unknown reference", "reference model models:/no-such-model/1")])
def test_a_wrong_tag_leaves_an_error_verdict_and_no_fingerprint(server, wine, case, expected):
    import mlflow

    from fp_registry.integrations.mlflow_ops import process_version, unchecked_versions

    data = {"missing": "runs:/0123456789abcdef/owner_data/wine.npz", "corrupt": wine["corrupt"]}.get(case, wine["data"])
    tags = {"fp_registry.protect": "ipguard", "fp_registry.data": data}
    if case != "no references":
        refs = ["models:/no-such-model/1"] if case == "unknown reference" else wine["refs"]
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
