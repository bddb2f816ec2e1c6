"""DeepCore: both similarity variants, batch clustering, refusal of non-classifiers, artifact round trip."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import fp_registry as fpr
from fp_registry.algorithms.clustering import cluster_suspects
from fp_registry.errors import NotApplicableError
from fp_registry.suspect import Suspect


@pytest.fixture(scope="module")
def models(digits_owner: Any, digits_independent: list, digits_finetuned: Any) -> dict[str, torch.nn.Module]:
    """Owner, derived copies and four same-architecture models trained independently on the same data."""
    homs = {f"hom{i}": m for i, m in enumerate(digits_independent, start=1)}
    return {"owner": digits_owner, "copy": copy.deepcopy(digits_owner), "tuned": digits_finetuned, **homs}


@pytest.mark.parametrize("similarity", ["soft", "label"])
def test_similarity_flags_copies_not_homologous(models: dict, digits: dict, similarity: str) -> None:
    fp = fpr.fingerprint(models["owner"], method="deepcore", similarity=similarity, n_points=40,
                         negatives=[models["hom1"], models["hom2"]], positives=[models["copy"]],
                         progress=False, **digits)
    assert fp.verify(models["copy"]).is_match
    assert fp.verify(models["tuned"]).is_match
    for name in ("hom3", "hom4"):  # unseen by calibration
        v = fp.verify(models[name])
        assert not v.is_match, (name, v.score, v.threshold)


def test_clustering_separates_derived_from_homologous(models: dict, digits: dict) -> None:
    fp = fpr.fingerprint(models["owner"], method="deepcore", n_points=40, negatives=[], progress=False, **digits)
    batch = [Suspect(models[n], n) for n in ("hom3", "copy", "hom4", "tuned")]
    refs = [Suspect(models[n], n) for n in ("hom1", "hom2")]
    result = cluster_suspects(fp, batch, refs)
    assert result.in_owner_cluster == {"hom3": False, "copy": True, "hom4": False, "tuned": True}
    assert result.references_in_owner_cluster == 0
    single = cluster_suspects(fp, [Suspect(models["tuned"], "tuned")])
    assert "degenerate" in single.note and single.in_owner_cluster == {"tuned": False}


def test_regression_owner_refused() -> None:
    from fp_registry.scenarios import get_scenario, owner_inputs

    regressor = get_scenario("diabetes-fcn").build(0)  # refusal happens before any training would matter
    with pytest.raises(NotApplicableError, match="decision boundary"):
        fpr.fingerprint(regressor, method="deepcore", negatives=[], progress=False, **owner_inputs("diabetes-fcn"))


def test_save_load_round_trip(models: dict, digits: dict, tmp_path: Any) -> None:
    fp = fpr.fingerprint(models["owner"], method="deepcore", similarity="label", n_points=20,
                         negatives=[models["hom1"]], progress=False, **digits)
    fp.save(tmp_path / "fp")
    back = fpr.load_fingerprint(tmp_path / "fp")
    assert back.settings["target"] == "other" and back.settings["eps"] == 0.05  # "auto" resolved and stored
    for name in ("tuned", "hom3"):
        a, b = fp.verify(models[name]), back.verify(models[name])
        assert (a.score, a.threshold, a.is_match) == (b.score, b.threshold, b.is_match)
