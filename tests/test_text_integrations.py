"""Text models end to end: a token-id BERT protected in MLflow (pt2) and checked there and on a local Hub."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

pytest.importorskip("mlflow")
pytest.importorskip("transformers")
from conftest_mlflow import register_model_version, server_fixture  # noqa: E402
from fakehub import running_hub  # noqa: E402

VAULT = "hf://acme/text-vault"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from server_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    """The text-bert owner, a fine-tuned copy (other data) and an independent model trained the same way."""
    from fp_registry.scenarios import get_scenario, train_owner
    from fp_registry.training import fit

    torch.set_num_threads(1)
    owner = train_owner("text-bert", seed=0)
    x, y = get_scenario("text-bert").load_data().other
    tuned = fit(copy.deepcopy(owner), "classification", x, y, steps=40, lr=1e-3, seed=5)
    return {"owner": owner, "tuned": tuned, "indep": train_owner("text-bert", seed=7)}


@pytest.fixture(scope="module")
def protected(server: str, models: dict[str, Any]) -> dict[str, Any]:
    from fp_registry.integrations.mlflow_backend import MlflowBackend
    from fp_registry.integrations.mlflow_ops import protect_version
    from fp_registry.scenarios import owner_inputs

    ids = owner_inputs("text-bert")["data"]
    assert ids.dtype == torch.int64
    versions = {k: register_model_version(server, f"text-{k}", m, ids) for k, m in models.items()}
    backend = MlflowBackend(f"mlflow+{server}")
    entry = protect_version(backend, "text-owner", versions["owner"], method="textprobe", scenario="text-bert",
                            n_negatives=5)
    return {"backend": backend, "entry": entry, "versions": versions}


def test_mlflow_checks_text_models_and_tags_them(server: str, protected: dict[str, Any]) -> None:
    import mlflow

    from fp_registry.integrations.mlflow_ops import check_version

    backend, versions = protected["backend"], protected["versions"]
    assert protected["entry"].method == "textprobe"
    [tuned] = check_version(backend, "text-tuned", versions["tuned"])
    [indep] = check_version(backend, "text-indep", versions["indep"])
    assert tuned.is_match and tuned.n_queries > 0 and tuned.score > indep.score + 0.1, (tuned.score, indep.score)
    c = mlflow.MlflowClient(server)
    assert c.get_model_version("text-tuned", versions["tuned"]).tags["fp_registry.verdict"] == "match"
    # 5 homologous calibration models make a rough threshold for this weak text method (README: independent
    # text-bert models score up to 0.56 on a full zoo), so only the tag's consistency is checked for the independent
    expected = "match" if indep.is_match else "clean"
    assert c.get_model_version("text-indep", versions["indep"]).tags["fp_registry.verdict"] == expected
    # white-box evidence beside the verdict: registry owner and suspects are exported programs, the null in-memory
    wb_t, wb_i = tuned.evidence["whitebox"], indep.evidence["whitebox"]
    for key in ("cka", "weights"):
        assert wb_t[key]["score"] > wb_i[key]["score"] + 0.2, (key, wb_t, wb_i)
        assert wb_t[key]["p_empirical"] == pytest.approx(1 / 6)  # the floor with the 5 calibration independents
    tags = c.get_model_version("text-tuned", versions["tuned"]).tags
    assert float(tags["fp_registry.whitebox.weights"]) == pytest.approx(wb_t["weights"]["score"], rel=1e-3)
    assert wb_t["fused"]["match"] and wb_t["fused"]["score"] > wb_i["fused"]["score"]  # fused: beside the verdict
    assert tags["fp_registry.whitebox.fused_match"] == "true" and float(tags["fp_registry.whitebox.fused_p"]) < 0.2


def _push_transformers(hub: Any, repo: str, model: Any, tmp: Any) -> str:
    """Upload the wrapped ``BertForSequenceClassification`` as a plain transformers repo (safetensors)."""
    folder = tmp / repo.replace("/", "__")
    model.bert.save_pretrained(folder, safe_serialization=True)
    return hub.commit(repo, {p.name: p.read_bytes() for p in folder.iterdir()})


def test_hub_scan_flags_the_transformers_copy(tmp_path_factory, models: dict[str, Any],
                                              protected: dict[str, Any]) -> None:
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.integrations.hf_scan import scan

    fp = protected["backend"].load(protected["entry"])
    tmp = tmp_path_factory.mktemp("text-hub")
    with running_hub(tmp / "cache") as hub:
        sha = _push_transformers(hub, "acme/text-owner", models["owner"], tmp)
        HfVault(VAULT).put(fp, f"hf://acme/text-owner@{sha}")
        _push_transformers(hub, "pirate/text-ft", models["tuned"], tmp)
        _push_transformers(hub, "other/text-indep", models["indep"], tmp)
        report = scan(VAULT, limit=20, state=tmp / "state.jsonl", workers=1)
    rows = {r["repo"]: r for r in report.results}
    assert rows["pirate/text-ft"]["status"] == "match", rows["pirate/text-ft"]
    wb = {repo: rows[repo]["verdicts"][0]["evidence"]["whitebox"] for repo in ("pirate/text-ft", "other/text-indep")}
    assert wb["pirate/text-ft"]["weights"]["score"] > wb["other/text-indep"]["weights"]["score"] + 0.2, wb
    indep = fp.verify(models["indep"])  # the same verdict through the Hub as in memory (rough threshold, above)
    assert rows["other/text-indep"]["status"] == ("match" if indep.is_match else "clean"), rows["other/text-indep"]
    assert rows["acme/text-owner"]["status"] == "skipped"
    assert report.exit_code() == 1


def test_worker_protects_a_text_owner_named_by_its_tags(server: str, models: dict[str, Any],
                                                        protected: dict[str, Any]) -> None:
    """The worker's path: a registered model tagged protect=textprobe, scenario=text-bert gets a token fingerprint."""
    import mlflow

    from fp_registry.integrations.mlflow_ops import process_version
    from fp_registry.scenarios import owner_inputs

    c = mlflow.MlflowClient(server)
    c.create_registered_model("text-auto", tags={"fp_registry.protect": "textprobe",
                                                 "fp_registry.scenario": "text-bert"})
    version = register_model_version(server, "text-auto", models["owner"], owner_inputs("text-bert")["data"])
    backend = protected["backend"]
    [v] = process_version(backend, "text-auto", version, config={"n_negatives": 5})  # negatives cached above
    assert v.status == "skipped" and "textprobe" in v.evidence["reason"]
    tags = c.get_model_version("text-auto", version).tags
    assert tags["fp_registry.protected"] == "true" and tags["fp_registry.method"] == "textprobe"
    [entry] = [e for e in backend.entries() if e.model_uri == f"models:/text-auto/{version}"]
    assert backend.load(entry).spec["input_kind"] == "int64"
