"""The per-verification fast paths give the same results as the general paths they short-cut."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fp_registry.calibration import Calibration
from fp_registry.evaluation.harness import time_verification
from fp_registry.suspect import Suspect, match_rate


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 4))


def test_single_chunk_equals_chunked_and_counts_queries() -> None:
    net, x = _net().eval(), torch.randn(50, 8)
    one, many = Suspect(net, batch_size=256), Suspect(net, batch_size=7)
    assert torch.allclose(one.raw(x), many.raw(x), atol=1e-6)  # BLAS blocking differs with the batch size
    assert torch.equal(one.labels(x, 4), many.labels(x, 4))
    assert one.n_queries == 100 and many.n_queries == 100


def test_eval_mode_applies_to_a_training_child_and_is_restored() -> None:
    net, x = _net().eval(), torch.randn(64, 8)
    net[1].train()  # root in eval mode, one child (dropout) still training
    expected = _net().eval()(x)
    assert torch.equal(Suspect(net).raw(x), expected.detach())  # dropout was off during the query
    assert not net.training and net[1].training  # every submodule gets its own mode back
    net.train()
    net[3].eval()
    assert torch.equal(Suspect(net).raw(x), expected.detach())
    assert [m.training for m in net.modules()] == [True, True, True, True, False]


def test_fixed_batch_callable_falls_back_to_row_by_row() -> None:
    net = _net().eval()

    def one_row_only(a: np.ndarray) -> np.ndarray:
        if len(a) != 1:
            raise RuntimeError("exported with batch 1")
        return net(torch.as_tensor(a)).detach().numpy()

    x = torch.randn(5, 8)
    assert torch.allclose(Suspect(one_row_only).raw(x), net(x).detach(), atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 7, 100, 333])
def test_match_rate_is_bit_identical_to_torch_mean(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    for hits in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        a = torch.randint(0, 10, (n,), generator=gen)
        b = a.clone()
        b[hits:] = (b[hits:] + 1) % 10
        assert match_rate(a, b) == float((a == b).float().mean())


def test_p_value_matches_the_definition_with_ties_and_nan() -> None:
    neg = [0.1, 0.5, 0.5, 0.9, float("nan"), 0.3]
    cal = Calibration(0.95, neg)
    for score in (-1.0, 0.1, 0.3, 0.5, 0.50001, 0.9, 1.0):
        expected = (1 + sum(1 for s in neg if s >= score)) / (1 + len(neg))
        assert cal.p_value(score) == expected
    assert cal.p_value(float("nan")) is None
    assert Calibration.from_dict(cal.to_dict()).p_value(0.5) == cal.p_value(0.5)  # cache not serialised
    assert set(cal.to_dict()) == {"threshold", "negative_scores", "positive_scores", "target_fpr"}


def test_method_object_is_cached_and_follows_settings(ipguard_fp: object) -> None:
    fp = ipguard_fp
    first = fp.method_object()
    assert fp.method_object() is first
    fp.settings = {**fp.settings, "k": 0.25}
    assert fp.method_object() is not first and fp.method_object().settings["k"] == 0.25


def test_timing_calls_verify_and_restores_training_mode(ipguard_fp: object) -> None:
    fp, net = ipguard_fp, _owner_like()
    net.train()
    seconds, forward = time_verification(fp, net, [fp.tensors["queries"]["x"]], repeats=3)
    assert seconds > 0 and forward > 0 and math.isfinite(seconds / forward)
    assert net.training


def _owner_like() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture(scope="module")
def ipguard_fp() -> object:
    import fp_registry as fpr

    torch.set_num_threads(1)
    owner = _owner_like().eval()
    x = torch.rand(64, 8)
    y = owner(x).argmax(1).detach()
    return fpr.fingerprint(owner, method="ipguard", data=x, labels=y, negatives=[_net().eval()],
                           n_queries=20, steps=20, progress=False)


def test_report_lists_each_suspects_utility_and_scores() -> None:
    from fp_registry.evaluation.report import markdown

    suspects = [{"name": "o/prune(ratio=0.5)", "family": "prune", "derived": True, "score": 0.9,
                 "utility": {"accuracy": 0.91}},
                {"name": "o/retrain(k=0)", "family": "homologous", "derived": False, "score": 0.2,
                 "utility": {"accuracy": 0.95}}]
    method = {"method": "ipguard", "status": "ok", "suspects": suspects, "families": {}, "overall": {}}
    report = {"scenario": "s", "task": "classification", "seed": 0, "zoo_seconds": 1.0, "zoo": {},
              "owner_utility": {"accuracy": 0.97}, "methods": [method]}
    text = markdown({**report, "methods": []}) + markdown({**report, "methods": [
        {**method, "overall": dict.fromkeys(("aruc", "roc_auc", "tpr", "tnr", "tpr_at_1fpr"), 0.5),
         "same_arch_fpr": 0.0, "threshold": 0.5, "queries": 1, "fingerprint_seconds": 1.0, "verify_seconds": 0.1,
         "verify_forward_ratio": 1.0}]})
    assert "| owner (reference) | - | - | 0.970 |" in text
    assert "| `o/prune(ratio=0.5)` | prune | derived | 0.910 | 0.900 |" in text
    assert "| `o/retrain(k=0)` | homologous | independent | 0.950 | 0.200 |" in text


@pytest.mark.parametrize("head", ["logits", "probs", "labels", "float64"])
def test_log_probs_equal_the_log_of_canonical_outputs(head: str) -> None:
    net, x = _net().eval(), torch.randn(40, 8)
    x[0] *= 50  # one confident row, so the floor is active somewhere
    wrap = {"logits": net, "probs": lambda a: net(torch.as_tensor(a)).softmax(1),
            "labels": lambda a: net(torch.as_tensor(a)).argmax(1),
            "float64": lambda a: net(torch.as_tensor(a)).double()}
    s = Suspect(wrap[head])
    expected = np.log(np.maximum(s.outputs(x, "classification", 4).numpy().astype(np.float64), 1e-6))
    got = s.log_probs(x, 4)
    assert got.dtype == np.float32 and got.shape == (40, 4)
    assert np.abs(got - expected).max() < 1e-5
    assert got.min() >= np.float32(math.log(1e-6))


def test_log_probs_reject_a_wrong_output_width() -> None:
    from fp_registry.errors import ShapeMismatchError

    with pytest.raises(ShapeMismatchError, match="returns 4 outputs per input"):
        Suspect(_net().eval()).log_probs(torch.randn(5, 8), 3)


@pytest.mark.parametrize("hidden,signed", [((), False), ((), True), ((6,), False)])
def test_numpy_verifier_equals_the_torch_verifier(hidden: tuple[int, ...], signed: bool) -> None:
    from fp_registry.algorithms.metav_verifier import NumpyVerifier, make_verifier, plain_state, verifier_input

    torch.manual_seed(2)
    v = make_verifier(12, hidden)
    shift, scale = torch.randn(12), torch.rand(12) + 0.1
    feats = torch.randn(3, 12)
    expected = v(verifier_input(feats, shift, scale, signed)).detach().double().reshape(-1)
    numpy_v = NumpyVerifier({**plain_state(v), "shift": shift, "scale": scale}, signed)
    assert (numpy_v.folded is not None) == (not hidden and not signed)  # the default verifier takes the fold
    got = [numpy_v(f.numpy()) for f in feats]
    assert np.allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grad_outside", [True, False])
def test_queries_run_without_autograd_and_restore_the_callers_grad_mode(grad_outside: bool) -> None:
    seen: list[bool] = []
    net = _net().eval()
    net.register_forward_pre_hook(lambda _m, _inp: seen.append(torch.is_grad_enabled()))
    with torch.set_grad_enabled(grad_outside):
        out = Suspect(net, batch_size=16).raw(torch.randn(40, 8))  # three chunks
        Suspect(net).raw(torch.randn(4, 8))  # one chunk
        assert torch.is_grad_enabled() is grad_outside
    assert seen == [False] * 4 and not out.requires_grad


def test_a_failing_suspect_gets_its_modes_and_the_grad_mode_back() -> None:
    from fp_registry.errors import ShapeMismatchError

    net = _net().train()
    net[3].eval()
    with pytest.raises(ShapeMismatchError, match="failed on inputs of shape"):
        Suspect(net).raw(torch.randn(4, 5))  # wrong width: the batch fails, then row by row
    assert [m.training for m in net.modules()] == [True, True, True, True, False]
    assert torch.is_grad_enabled()


def test_metav_score_uses_a_plan_made_once_and_keeps_its_evidence() -> None:
    from fp_registry.algorithms.metav import MetaV
    from fp_registry.algorithms.metav_verifier import (make_verifier, plain_state, suspect_features,
                                                       transform_features, verifier_input)
    from fp_registry.fingerprints import Fingerprint
    from fp_registry.methods import Built

    torch.manual_seed(3)
    v, x = make_verifier(6 * 4, ()), torch.randn(6, 8)
    shift, scale = torch.randn(24), torch.rand(24) + 0.5
    tensors = {"queries": {"x": x}, "verifier": {**plain_state(v), "shift": shift, "scale": scale}}
    fp = Fingerprint("metav", "classification", {}, {"output_dim": 4}, Built(tensors, {"verifier": {
        "features": "logprob", "input": "signed"}}))
    net = _net().train()
    scores = [fp.verify(net) for _ in range(2)]
    assert scores[0].score == scores[1].score and net.training
    assert fp.prepared("metav.plan", lambda: None) is fp.prepared("metav.plan", lambda: None)
    feats = transform_features(net.eval()(x).detach().softmax(1), "classification", "logprob").reshape(1, -1)
    logit = float(v(verifier_input(feats, shift, scale, True)).detach())
    assert scores[0].evidence["n_queries"] == 6 and abs(scores[0].evidence["logit"] - logit) < 1e-4
    plan = fp.prepared("metav.plan", lambda: None)
    general = suspect_features(Suspect(net), x, "classification", 4, "logprob")  # the path the plan short-cuts
    assert plan.centring is not None and scores[0].evidence["logit"] == plan.verifier(general)
    temperature = MetaV.defaults["score_temperature"]
    assert scores[0].score == 1 / (1 + math.exp(-scores[0].evidence["logit"] / temperature))


def test_checked_verdict_equals_the_dataclass_constructor() -> None:
    import dataclasses

    from fp_registry.records import Verdict

    evidence = {"logit": 1.5}
    for score, p_value in ((0.7, 0.01), (0.2, None), (0.5, 1.0)):
        fast = Verdict.checked(score, 0.5, p_value, 50, "metav", 0.25, evidence, "net")
        slow = Verdict(score, 0.5, score >= 0.5, p_value, 50, "metav", 0.25, evidence, suspect="net")
        assert fast == slow and list(fast.__dict__.items()) == list(slow.__dict__.items())
        assert list(fast.__dict__) == [f.name for f in dataclasses.fields(Verdict)]
        assert fast.to_dict() == slow.to_dict() and fast.label == slow.label
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.score = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("first", [[2.0, 3.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 5.0, 5.0]])
def test_log_probs_decide_logits_or_probabilities_whatever_the_first_entries(first: list[float]) -> None:
    torch.manual_seed(4)
    logits = torch.randn(6, 4) * 3
    logits[0, :3] = torch.tensor(first)
    probs = logits.softmax(1)
    probs[0] = torch.tensor([0.0, 0.0, 0.0, 1.0]) if first == [0.0, 0.0, 0.0] else probs[0]
    for raw in (logits, logits.abs() + 0.5, probs):  # logits, all-positive logits, probabilities
        s = Suspect(lambda a, raw=raw: raw.numpy())
        expected = np.log(np.maximum(s.outputs(torch.zeros(6, 2), "classification", 4).numpy(), 1e-6))
        assert np.abs(s.log_probs(torch.zeros(6, 2), 4) - expected).max() < 1e-5


def test_a_suspect_rewraps_a_suspect_and_rejects_what_it_cannot_call() -> None:
    from fp_registry.errors import ShapeMismatchError

    net = _net()
    inner = Suspect(net, name="inner")
    assert Suspect(inner).model is net and Suspect(inner).name == "inner"
    assert Suspect(inner, name="outer").name == "outer" and Suspect(net).name == "Sequential"
    with pytest.raises(ShapeMismatchError, match="not callable"):
        Suspect(42)


@pytest.mark.parametrize("row", [[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.3, 0.5, 0.2, 0.9],
                                 [-0.1, 0.2, 0.3, 0.1], [9.0, -9.0, 0.0, 0.0], [float("nan"), 1.0, 0.0, 0.0]])
def test_the_log_softmax_span_never_mistakes_probabilities_for_logits(row: list[float]) -> None:
    from fp_registry.suspect import _wider_than_probabilities
    from fp_registry.tasks import looks_like_probs

    raw = torch.tensor([row, [0.1, 0.2, 0.3, 0.4]])
    wide = _wider_than_probabilities(torch.log_softmax(raw, dim=1).numpy())
    assert not (wide and looks_like_probs(raw.numpy()))  # wide only ever says "logits" when the full test agrees
    assert wide == (row == [9.0, -9.0, 0.0, 0.0])
    s = Suspect(lambda a: raw.numpy())
    expected = np.log(np.maximum(s.outputs(torch.zeros(2, 3), "classification", 4).numpy(), 1e-6))
    assert np.array_equal(np.isnan(s.log_probs(torch.zeros(2, 3), 4)), np.isnan(expected))
    assert np.nanmax(np.abs(s.log_probs(torch.zeros(2, 3), 4) - expected)) < 1e-5


def test_log_probs_floor_constant_gives_the_bits_of_the_python_float() -> None:
    net, x = _net().eval(), torch.randn(30, 8) * 40  # confident rows: the floor is active
    raw = net(x).detach()
    for floor in (1e-6, 1e-3):
        expected = np.maximum(torch.log_softmax(raw, dim=1).numpy(), math.log(floor))
        got = Suspect(net).log_probs(x, 4, floor=floor)
        assert got.dtype == np.float32 and np.array_equal(got, expected) and (got == np.float32(math.log(floor))).any()
