"""Token-input models: int64 queries survive save/load, copies beat independent BERTs, clear errors, TAFA refuses."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

import fp_registry as fpr
from fp_registry.errors import NotApplicableError, ShapeMismatchError
from fp_registry.text import TinyBert, synthetic_text, token_api
from fp_registry.training import evaluate_utility, fit

STEPS = 300  # a few seconds per model on an idle machine; enough to learn topic and most of the sentiment rule


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor, **cfg: Any) -> TinyBert:
    torch.manual_seed(seed)
    return fit(TinyBert(**cfg), "classification", x, y, steps=STEPS, lr=2e-3, batch_size=64, seed=seed)


@pytest.fixture(scope="module")
def text() -> dict[str, Any]:
    torch.set_num_threads(1)
    x, y, _ = synthetic_text(1200)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    owner = _trained(0, xt[:900], yt[:900])
    tuned = fit(copy.deepcopy(owner), "classification", xt[900:], yt[900:], steps=30, lr=1e-3, seed=5)
    return {"x": xt[:900], "y": yt[:900], "other": (xt[900:], yt[900:]), "owner": owner, "tuned": tuned,
            "neg": [_trained(1, xt[:900], yt[:900])], "indep": _trained(2, xt[:900], yt[:900])}


@pytest.fixture(scope="module")
def fp(text: dict[str, Any]) -> Any:
    return fpr.fingerprint(text["owner"], method="textprobe", data=text["x"], labels=text["y"],
                           negatives=text["neg"], n_points=32, steps=15, progress=False)


def test_owner_learns_and_keeps_ids(text: dict[str, Any], fp: Any) -> None:
    acc = evaluate_utility(text["owner"], "classification", *text["other"])["accuracy"]
    assert acc > 0.55, acc  # chance is 0.25, topic alone gives 0.5: the tiny BERT learns from token ids
    assert fp.spec["input_kind"] == "int64"
    assert fp.tensors["core"]["x"].dtype == torch.int64


def test_token_round_trip(tmp_path: Any, text: dict[str, Any], fp: Any) -> None:
    before = fp.verify(text["tuned"]).score
    loaded = fpr.load_fingerprint(fp.save(tmp_path / "fp"))
    assert loaded.tensors["core"]["x"].dtype == torch.int64
    assert torch.equal(loaded.tensors["core"]["x"], fp.tensors["core"]["x"])
    assert loaded.verify(text["tuned"]).score == pytest.approx(before, abs=1e-6)


def test_copy_above_independent(text: dict[str, Any], fp: Any) -> None:
    tuned, indep = fp.verify(text["tuned"]), fp.verify(text["indep"])
    assert tuned.score > indep.score + 0.1, (tuned.score, indep.score)
    assert tuned.is_match  # one calibration negative only: the threshold is rough, so no claim about indep here
    # black boxes that only take token ids: the raw transformers model, and a numpy callable with a mask
    assert fp.verify(text["owner"].bert).score == pytest.approx(1.0, abs=1e-4)
    assert fp.verify(token_api(text["owner"].bert)).score == pytest.approx(1.0, abs=1e-4)


def test_wrong_vocabulary_or_outputs_is_a_clear_error(fp: Any) -> None:
    small_vocab = TinyBert(vocab_size=64)
    with pytest.raises(ShapeMismatchError, match="vocabulary"):
        fp.verify(small_vocab)  # white box: its config names the vocabulary
    with pytest.raises(ShapeMismatchError, match="vocabulary"):
        fp.verify(token_api(small_vocab.bert))  # black box: the embedding lookup fails
    with pytest.raises(ShapeMismatchError, match="outputs"):
        fp.verify(TinyBert(n_classes=3))


def test_own_token_data_from_an_npz_stays_token_ids(tmp_path: Any, text: dict[str, Any]) -> None:
    from fp_registry.data import load_data_arg

    np.savez(tmp_path / "own.npz", X=text["x"].numpy().astype(np.int32), y=text["y"].numpy())
    x, y = load_data_arg(str(tmp_path / "own.npz"))
    assert x.dtype == np.int64 and np.array_equal(x, text["x"].numpy())
    own = fpr.fingerprint(text["owner"], method="textprobe", data=x, labels=y, negatives=text["neg"], n_points=16,
                          steps=5, progress=False)
    assert own.spec["input_kind"] == "int64" and own.verify(text["tuned"]).score > own.verify(text["indep"]).score


def test_tafa_refuses_bert(text: dict[str, Any]) -> None:
    with pytest.raises(NotApplicableError, match="GELU"):
        fpr.fingerprint(text["owner"], method="tafa", data=text["x"], labels=text["y"], progress=False)


def test_textprobe_refuses_continuous_inputs(digits: dict[str, Any]) -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 10))
    with pytest.raises(NotApplicableError, match="token"):
        fpr.fingerprint(mlp, method="textprobe", progress=False, **digits)


def test_zoo_queries_are_token_ids(text: dict[str, Any]) -> None:
    from fp_registry.methods import make_owner
    from fp_registry.zoo.builder import make_context

    owner = make_owner(text["owner"], "classification", text["x"].numpy(), text["y"].numpy())
    ctx = make_context(owner, (text["other"][0].numpy(), text["other"][1].numpy()))
    q = ctx.queries(64, 0)
    assert q.dtype == torch.int64 and ctx.alt_x.dtype == torch.int64
    assert int(q.max()) < 256 and bool((q[:, 0] == 1).all())
    assert np.isfinite(text["owner"](q).detach().numpy()).all()


@pytest.mark.parametrize("method", ["ipguard", "passport"])  # metav and deepcore take token owners (their tests)
def test_gradient_methods_refuse_token_owners_in_one_line(text: dict[str, Any], method: str) -> None:
    with pytest.raises(NotApplicableError, match=r"does not support token-id \(int64\) inputs") as err:
        fpr.fingerprint(text["owner"], method=method, data=text["x"], labels=text["y"], progress=False)
    assert "textprobe" in err.value.one_line()
