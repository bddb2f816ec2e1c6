"""Causal LM owner (text-gpt): it learns the language, token-only black boxes verify, copies beat independents."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fp_registry as fpr
from fp_registry.errors import NotApplicableError, UsageError
from fp_registry.textlm import CONTEXT, VOCAB_SIZE, TinyGPT, next_token_api, synthetic_lm
from fp_registry.training import fit

STEPS = 200  # full-sequence LM loss: a few seconds per model, held-out CE well below the unigram baseline


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor) -> TinyGPT:
    torch.manual_seed(seed)
    return fit(TinyGPT(), "classification", x, y, steps=STEPS, lr=2e-3, batch_size=64, seed=seed)


@pytest.fixture(scope="module")
def lm() -> dict[str, Any]:
    torch.set_num_threads(1)
    x, y, _ = synthetic_lm(1600, seed=11)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    owner = _trained(0, xt[:1200], yt[:1200])
    tuned = fit(copy.deepcopy(owner), "classification", xt[1200:], yt[1200:], steps=30, lr=1e-3, seed=5)
    return {"x": xt[:1200], "y": yt[:1200], "held": (xt[1200:], yt[1200:]), "owner": owner, "tuned": tuned,
            "neg": [_trained(1, xt[:1200], yt[:1200])], "indep": _trained(2, xt[:1200], yt[:1200])}


@pytest.fixture(scope="module")
def fp(lm: dict[str, Any]) -> Any:
    return fpr.fingerprint(lm["owner"], method="textprobe", data=lm["x"], labels=lm["y"], negatives=lm["neg"],
                           n_points=32, steps=10, progress=False)


def test_language_uses_ids_above_the_reserved_ones() -> None:
    x, y, domain = synthetic_lm(200, seed=3)
    assert x.dtype == np.int64 and x.shape == (200, CONTEXT) and y.shape == (200,) and domain is None
    assert int(x.min()) >= 3 and int(x.max()) < VOCAB_SIZE  # no pad id: an attention mask from ids stays all ones
    again, _, _ = synthetic_lm(200, seed=3)
    assert np.array_equal(x, again)


def test_lm_beats_unigram_baseline(lm: dict[str, Any]) -> None:
    xh, yh = lm["held"]
    counts = torch.bincount(lm["y"], minlength=VOCAB_SIZE).float() + 1  # add-one unigram of the training labels
    unigram = float(-(counts / counts.sum()).log()[yh].mean())
    with torch.no_grad():
        ce = float(F.cross_entropy(lm["owner"](xh), yh))
    assert ce < unigram - 0.5, (ce, unigram)  # measured 2026-11-23: 4.31 vs 5.17 nats


def test_output_is_next_token_logits(lm: dict[str, Any]) -> None:
    xh = lm["held"][0][:8]
    with torch.no_grad():
        full = lm["owner"].gpt(input_ids=xh).logits
        assert torch.allclose(lm["owner"](xh), full[:, -1])
    assert fp_outputs_shape(lm["owner"], xh) == (8, VOCAB_SIZE)


def fp_outputs_shape(model: Any, x: torch.Tensor) -> tuple[int, ...]:
    from fp_registry.methods import make_owner

    owner = make_owner(model, "classification", x.numpy())
    assert owner.input_kind == "int64"
    return (len(x), owner.output_dim)


def test_black_box_transformers_model_verifies(lm: dict[str, Any], fp: Any) -> None:
    assert fp.verify(next_token_api(lm["owner"].gpt)).score == pytest.approx(1.0, abs=1e-4)
    assert fp.verify(next_token_api(lm["tuned"].gpt)).score == pytest.approx(fp.verify(lm["tuned"]).score, abs=1e-4)


def test_copy_above_independent(lm: dict[str, Any], fp: Any) -> None:
    tuned, indep = fp.verify(lm["tuned"]), fp.verify(lm["indep"])
    assert tuned.score > indep.score + 0.1, (tuned.score, indep.score)
    assert tuned.is_match


def test_save_load_keeps_tied_weights(tmp_path: Any, lm: dict[str, Any]) -> None:
    from fp_registry.modelio import load_reference, save_model

    loaded = load_reference(save_model(lm["tuned"], tmp_path / "m"))
    assert loaded.gpt.lm_head.weight is loaded.gpt.transformer.wte.weight
    xh = lm["held"][0][:16]
    with torch.no_grad():
        assert torch.equal(loaded(xh), lm["tuned"](xh))


def test_zoo_attacks_touch_gpt2_projections(lm: dict[str, Any]) -> None:
    from fp_registry.methods import make_owner
    from fp_registry.zoo.attacks import permute, quantize_int8
    from fp_registry.zoo.builder import make_context

    owner = lm["owner"]
    ctx = make_context(make_owner(owner, "classification", lm["x"].numpy(), lm["y"].numpy()))
    q = ctx.queries(32, 0)
    c_attn = owner.gpt.transformer.h[0].attn.c_attn.weight  # a transformers Conv1D, not an nn.Linear
    quant = quantize_int8(owner, ctx)
    w = quant.gpt.transformer.h[0].attn.c_attn.weight
    assert not torch.equal(w, c_attn)
    scale = w.abs().amax(0) / 127  # per output channel: columns of a Conv1D weight
    assert torch.allclose(w / scale, (w / scale).round(), atol=1e-3)  # every weight on the int8 grid
    perm = permute(owner, ctx, k=1)
    assert not torch.equal(perm.gpt.transformer.h[0].mlp.c_fc.weight, owner.gpt.transformer.h[0].mlp.c_fc.weight)
    with torch.no_grad():
        assert torch.allclose(perm(q), owner(q), atol=1e-4)


def test_metav_refuses_or_works_cleanly(lm: dict[str, Any]) -> None:
    kw = dict(data=lm["x"], labels=lm["y"], n_queries=8, steps=20, token_steps=20, progress=False)
    with pytest.raises(UsageError, match="needs at least two of each"):  # a verifier trained without copies
        fpr.fingerprint(lm["owner"], method="metav", negatives=lm["neg"], **kw)
    try:
        fp = fpr.fingerprint(lm["owner"], method="metav", positives=[lm["tuned"], copy.deepcopy(lm["owner"])],
                             negatives=[*lm["neg"], lm["indep"]], **kw)
    except NotApplicableError as exc:
        assert exc.one_line()
        return
    assert 0.0 <= fp.verify(lm["owner"]).score <= 1.0


def _extracted(lm: dict[str, Any], seed: int) -> TinyGPT:
    """The zoo's label-only extraction: a fresh GPT trained on the owner's top-1 answers to extractor queries."""
    from fp_registry.methods import make_owner
    from fp_registry.zoo.attacks import extract_labels
    from fp_registry.zoo.builder import make_context

    ctx = make_context(make_owner(lm["owner"], "classification", lm["x"].numpy(), lm["y"].numpy()))
    ctx.seed = seed
    return extract_labels(lm["owner"], ctx, steps=STEPS)


@pytest.fixture(scope="module")
def confer_zoo(lm: dict[str, Any]) -> dict[str, Any]:
    from fp_registry.zoo.spec import Zoo, ZooModel

    x, y = lm["x"], lm["y"]
    train = [ZooModel("tuned", lm["tuned"], True, "finetune", "train"),
             ZooModel("extract-1", _extracted(lm, 101), True, "extract", "train")]
    train += [ZooModel(f"indep-{s}", _trained(s, x, y), False, "homologous", "train") for s in (3, 4, 5, 6)]
    cal = [ZooModel("indep-1", lm["neg"][0], False, "homologous", "calibration")]
    return {"zoo": Zoo(train + cal), "extract": _extracted(lm, 202)}


def test_conferrable_rows_catch_label_only_extraction(tmp_path: Any, lm: dict[str, Any],
                                                       confer_zoo: dict[str, Any]) -> None:
    """With a train split, a student of the owner's labels outscores an independent model (both unseen)."""
    fp = fpr.fingerprint(lm["owner"], method="textprobe", data=lm["x"], labels=lm["y"], zoo=confer_zoo["zoo"],
                         n_points=32, steps=10, confer=100, confer_candidates=1000, progress=False)
    assert fp.tensors["confer"]["x"].shape == (100, CONTEXT) and fp.tensors["confer"]["x"].dtype == torch.int64
    ext, indep = fp.verify(confer_zoo["extract"]), fp.verify(lm["indep"])
    assert ext.evidence["z_agreement"] > indep.evidence["z_agreement"] + 1.0, (ext.evidence, indep.evidence)
    assert ext.score > indep.score and 0.0 <= indep.score <= 1.0
    loaded = fpr.load_fingerprint(fp.save(tmp_path / "fp"))
    assert loaded.verify(confer_zoo["extract"]).score == pytest.approx(ext.score, abs=1e-9)


def test_without_a_train_split_the_score_is_the_soft_similarity(lm: dict[str, Any], fp: Any) -> None:
    assert "confer" not in fp.tensors and "confer_reference" not in fp.info
    with pytest.warns(UserWarning, match="confer>0 needs a zoo's train split"):
        asked = fpr.fingerprint(lm["owner"], method="textprobe", data=lm["x"], labels=lm["y"], negatives=lm["neg"],
                                n_points=8, steps=2, confer=50, progress=False)
    assert "confer" not in asked.tensors
    v = fp.verify(lm["tuned"])
    assert v.score == pytest.approx(max(v.evidence["soft_similarity"], 0.0)) and "z_agreement" not in v.evidence
