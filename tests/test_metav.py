"""MetaV: task-agnostic build and verify, save/load, calibration on the calibration split, shape errors."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import fp_registry as fpr
from fp_registry.calibration import choose_threshold
from fp_registry.errors import ShapeMismatchError, UsageError
from modelkit import noised

SETTINGS = {"n_queries": 10, "steps": 60, "eval_every": 10}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """Tiny models: one intra-op thread avoids spin-waiting on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(name: str, seed: int, epochs: int) -> torch.nn.Module:
    from fp_registry.scenarios import get_scenario

    sc = get_scenario(name)
    x, y = sc.load_data().owner
    if sc.task == "generation":
        x, y = None, x
    return sc.train(sc.build(seed), x, y, seed, epochs=epochs).eval()


def _case(name: str) -> dict[str, Any]:
    from fp_registry.scenarios import owner_inputs

    epochs = 4
    owner = _train(name, 0, epochs)
    positives = [noised(owner, s, 0.02 + 0.01 * (s % 3)) for s in range(6)]
    negatives = [_train(name, 100 + s, epochs) for s in range(5)]
    kw = owner_inputs(name)
    fp = fpr.fingerprint(owner, method="metav", positives=positives[:4], negatives=negatives[:4], progress=False,
                         **kw, **SETTINGS)
    return {"fp": fp, "owner": owner, "kw": kw, "pos": positives, "neg": negatives}


@pytest.fixture(scope="module", params=["digits-mlp", "diabetes-fcn", "digits-gen"])
def case(request: pytest.FixtureRequest) -> dict[str, Any]:
    torch.manual_seed(0)
    return _case(request.param)


def test_separates_unseen_models_on_every_task(case: dict[str, Any]) -> None:
    fp = case["fp"]
    assert fp.method == "metav" and set(fp.tensors) == {"queries", "verifier"}
    unseen_pos = [fp.verify(m).score for m in case["pos"][4:]]  # never in training or calibration
    unseen_neg = [fp.verify(m).score for m in case["neg"][4:]]
    assert all(0.0 <= s <= 1.0 for s in unseen_pos + unseen_neg)
    assert min(unseen_pos) > max(unseen_neg)
    assert fp.verify(case["owner"]).is_match


def test_queries_stay_in_domain_and_artifact_holds_no_owner_weights(case: dict[str, Any]) -> None:
    fp = case["fp"]
    x = fp.tensors["queries"]["x"]
    assert x.shape[0] == SETTINGS["n_queries"]
    if fp.spec["domain"] is not None:
        lo, hi = fp.spec["domain"]
        assert float(x.min()) >= lo and float(x.max()) <= hi
    # only the verifier (weighted-distance layer by default) and its input normalisation, no owner weights
    v = fp.tensors["verifier"]
    hidden = fp.info["verifier"]["hidden"]
    assert set(v) == {f"{2 * i}.{k}" for i in range(len(hidden) + 1) for k in ("weight", "bias")} | {"shift", "scale"}
    assert v["0.weight"].shape == ((hidden or [1])[0], SETTINGS["n_queries"] * fp.spec["output_dim"])


def test_monotone_verifier_ranks_the_owner_first(case: dict[str, Any]) -> None:
    fp = case["fp"]
    assert fp.info["verifier"]["input"] == "abs"
    assert bool((fp.tensors["verifier"]["0.weight"] <= 0).all())  # logit = bias - weighted distance to the owner
    top = fp.verify(case["owner"]).score
    assert all(fp.verify(m).score <= top for m in case["pos"] + case["neg"])
    assert fp.verify(copy.deepcopy(case["owner"])).score == top


def test_save_load_round_trip_gives_identical_scores(case: dict[str, Any], tmp_path: Any) -> None:
    fp = case["fp"]
    fp.save(tmp_path / "fp")
    again = fpr.load_fingerprint(tmp_path / "fp")
    for m in [case["owner"], case["pos"][5], case["neg"][4]]:
        a, b = fp.verify(m), again.verify(m)
        assert a.score == b.score and a.threshold == b.threshold and a.p_value == b.p_value


def test_threshold_is_calibrated_on_the_calibration_split(case: dict[str, Any]) -> None:
    fp = case["fp"]
    cal = fp.calibration
    # fingerprint() sends the odd-indexed given models to calibration: 2 positives, 2 negatives
    assert len(cal.negative_scores) == 2 and len(cal.positive_scores) == 2
    neg = [fp.verify(m).score for m in case["neg"][1:4:2]]
    pos = [fp.verify(m).score for m in case["pos"][1:4:2]]
    assert neg == pytest.approx(cal.negative_scores) and pos == pytest.approx(cal.positive_scores)
    assert fp.threshold == pytest.approx(choose_threshold(neg, pos, cal.target_fpr))
    assert fp.verify(case["neg"][4]).p_value is not None


def test_wrong_output_size_is_a_shape_error(case: dict[str, Any]) -> None:
    fp = case["fp"]
    in_features = fp.tensors["queries"]["x"].reshape(SETTINGS["n_queries"], -1).shape[1]
    wrong = torch.nn.Linear(in_features, fp.spec["output_dim"] + 3)
    with pytest.raises(ShapeMismatchError):
        fp.verify(wrong)


def test_reproducible_from_seed_and_needs_negatives() -> None:
    from fp_registry.scenarios import owner_inputs

    kw = owner_inputs("diabetes-fcn")
    owner = _train("diabetes-fcn", 0, 3)
    negs = [_train("diabetes-fcn", 50 + s, 3) for s in range(2)]
    pos = [noised(owner, 1, 0.05), noised(owner, 2, 0.05)]
    small = {**SETTINGS, "steps": 20}
    a = fpr.fingerprint(owner, method="metav", positives=pos, negatives=negs, seed=3, progress=False, **kw, **small)
    b = fpr.fingerprint(owner, method="metav", positives=pos, negatives=negs, seed=3, progress=False, **kw, **small)
    assert torch.equal(a.tensors["queries"]["x"], b.tensors["queries"]["x"])
    assert all(torch.equal(a.tensors["verifier"][k], b.tensors["verifier"][k]) for k in a.tensors["verifier"])
    with pytest.raises(UsageError):
        fpr.fingerprint(owner, method="metav", positives=pos, negatives=[], progress=False, **kw, **small)


def test_verifier_forward_from_state_dict_matches_the_module() -> None:
    from fp_registry.algorithms.metav_verifier import apply_numpy, make_verifier, numpy_layers

    torch.manual_seed(0)
    for hidden in [(), (16, 8)]:
        net = make_verifier(12, hidden).double()
        z = torch.randn(1, 12, dtype=torch.float64)
        with torch.no_grad():
            got = apply_numpy(numpy_layers(net.state_dict()), z.numpy())
            assert float(got.item()) == pytest.approx(float(net(z)), abs=1e-12)


def test_token_inputs_are_not_applicable() -> None:
    from fp_registry.algorithms.metav import MetaV
    from fp_registry.errors import NotApplicableError
    from fp_registry.methods import Owner

    owner = Owner(torch.nn.Embedding(10, 2), "classification", None, None, (5,), 2, None)
    owner.input_kind = "int64"  # set directly: token owners come from make_owner on id data
    with pytest.raises(NotApplicableError):
        MetaV().check_owner(owner)
