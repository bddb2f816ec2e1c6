"""MetaV's confer=K option: label-only extraction caught, save/load, classifier-only, confer=0 unchanged."""
from __future__ import annotations

from typing import Any

import pytest
import torch

import fp_registry as fpr
from fp_registry.errors import NotApplicableError
from fp_registry.zoo.spec import Zoo, ZooModel
from modelkit import noised

SETTINGS = {"n_queries": 10, "steps": 60, "eval_every": 10}
EPOCHS = 4


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Any:
    """Tiny models: one intra-op thread (restored afterwards) avoids spin-waiting on 2 shared cores."""
    from fp_registry.training import one_thread

    with one_thread():
        yield


def _train(name: str, seed: int) -> torch.nn.Module:
    from fp_registry.scenarios import get_scenario

    sc = get_scenario(name)
    x, y = sc.load_data().owner
    return sc.train(sc.build(seed), x, y, seed, epochs=EPOCHS).eval()


def _extracted(owner: torch.nn.Module, kw: dict[str, Any], seed: int) -> torch.nn.Module:
    """A student trained on the owner's top-1 labels alone (the zoo's label-only extraction attack)."""
    from fp_registry.zoo.attacks import AttackContext, extract_labels

    ctx = AttackContext("classification", torch.as_tensor(kw["data"]).float(), None, None, None, (64,), 10, None,
                        seed)
    return extract_labels(owner, ctx, "same", steps=250)


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    from fp_registry.scenarios import owner_inputs

    torch.manual_seed(0)
    kw = owner_inputs("digits-mlp")
    owner = _train("digits-mlp", 0)
    train = [ZooModel("digits-mlp/noise(0)", noised(owner, 0, 0.03), True, "noise", "train"),
             ZooModel("digits-mlp/extract(1)", _extracted(owner, kw, 1), True, "extract", "train")]
    train += [ZooModel(f"digits-mlp/retrain(seed={s})", _train("digits-mlp", s), False, "homologous", "train")
              for s in range(101, 111)]
    cal = [ZooModel("digits-mlp/noise(1)", noised(owner, 1, 0.03), True, "noise", "calibration"),
           ZooModel("digits-mlp/retrain(seed=107)", _train("digits-mlp", 107), False, "homologous", "calibration")]
    unseen = {"extract": _extracted(owner, kw, 2), "indep": [_train("digits-mlp", s) for s in (201, 202, 203)]}
    return {"owner": owner, "kw": kw, "zoo": Zoo(train + cal), **unseen}


@pytest.fixture(scope="module")
def conferred(digits: dict[str, Any]) -> Any:
    return fpr.fingerprint(digits["owner"], method="metav", zoo=digits["zoo"], progress=False, confer=100,
                           confer_candidates=1000, **digits["kw"], **SETTINGS)


def test_conferrable_rows_catch_an_unseen_label_only_extraction(conferred: Any, digits: dict[str, Any]) -> None:
    ext = conferred.verify(digits["extract"])
    indep = [conferred.verify(m) for m in digits["indep"]]
    assert ext.evidence["agreement"] > max(v.evidence["agreement"] for v in indep) + 0.2, ext.evidence
    assert ext.evidence["z_agreement"] > max(v.evidence["z_agreement"] for v in indep) + 1.0
    assert ext.score > max(v.score for v in indep) and ext.is_match  # above the calibrated threshold
    assert all(0.0 <= v.score <= 1.0 for v in indep + [ext])
    assert conferred.verify(digits["owner"]).is_match


def test_artifact_holds_rows_labels_and_reference_only(conferred: Any, tmp_path: Any, digits: dict[str, Any]) -> None:
    assert set(conferred.tensors) == {"queries", "verifier", "confer"}
    rows, labels = conferred.tensors["confer"]["x"], conferred.tensors["confer"]["labels"]
    assert rows.shape == (100, 64) and labels.dtype == torch.int64 and set(conferred.tensors["confer"]) == {"x",
                                                                                                         "labels"}
    lo, hi = conferred.spec["domain"]
    assert float(rows.min()) >= lo and float(rows.max()) <= hi
    # the reference comes from the held-back half of the train independents (5 of 10 lineages), none of the copies
    assert conferred.info["confer"]["reference_models"] == 5
    assert set(conferred.info["confer_reference"]) == {"soft_mean", "soft_sd", "agree_mean", "agree_sd"}
    loaded = fpr.load_fingerprint(conferred.save(tmp_path / "fp"))
    for m in [digits["extract"], digits["indep"][0]]:
        assert loaded.verify(m).score == pytest.approx(conferred.verify(m).score, abs=1e-9)


def test_confer_needs_a_classifier() -> None:
    from fp_registry.scenarios import owner_inputs

    reg = _train("diabetes-fcn", 0)
    with pytest.raises(NotApplicableError, match="confer>0 compares top-1 labels"):
        fpr.fingerprint(reg, method="metav", negatives=[reg], progress=False, confer=50, **owner_inputs("diabetes-fcn"))


def test_confer_zero_is_the_default_fingerprint(digits: dict[str, Any]) -> None:
    kw = dict(positives=[noised(digits["owner"], s, 0.03) for s in range(2)], progress=False, **digits["kw"],
              negatives=digits["indep"][:2], **SETTINGS)
    plain, zero = fpr.fingerprint(digits["owner"], method="metav", **kw), \
        fpr.fingerprint(digits["owner"], method="metav", confer=0, **kw)
    assert set(zero.tensors) == {"queries", "verifier"} and "confer_reference" not in zero.info
    for group in plain.tensors:
        for key, t in plain.tensors[group].items():
            assert torch.equal(t, zero.tensors[group][key])
    v = zero.verify(digits["extract"])
    assert v.score == plain.verify(digits["extract"]).score and "z_agreement" not in v.evidence


def test_too_small_a_zoo_warns_and_builds_without_rows(digits: dict[str, Any]) -> None:
    with pytest.warns(UserWarning, match="confer>0 needs a zoo's train split"):
        fp = fpr.fingerprint(digits["owner"], method="metav", positives=[noised(digits["owner"], 0, 0.03)] * 2,
                             negatives=digits["indep"][:2], progress=False, confer=50, **digits["kw"], **SETTINGS)
    assert "confer" not in fp.tensors and "z_agreement" not in fp.verify(digits["indep"][2]).evidence
