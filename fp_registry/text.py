"""Token-input models: a tiny from-scratch BERT classifier and a locally generated text classification task."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .nets import RefNet

PAD, CLS, SEP = 0, 1, 2
#: word-id ranges of the synthetic vocabulary (ids below 3 are special tokens)
POS_WORDS = range(3, 23)        # "good" markers
NEG_WORDS = range(23, 43)       # "bad" markers
TOPIC_A = range(43, 73)         # topic words of topic 0
TOPIC_B = range(73, 103)        # topic words of topic 1
NOT_WORDS = range(103, 108)     # negators: flip the topic when directly before a topic word
FILLER = range(108, 256)
VOCAB_SIZE = 256
SEQ_LEN = 12                    # [CLS] + 10 words + [SEP], never padded
N_CLASSES = 4


class TinyBert(RefNet):
    """A small ``BertForSequenceClassification`` built from a ``BertConfig`` (never downloaded); returns logits.

    Why ``init_range=0.1`` (BERT's default is 0.02): from-scratch tiny models at 0.02 sat for hundreds of steps on
    the topic-only plateau (50 % accuracy) in our runs; 0.1 learns the sentiment rule within ~300 steps.
    Why a wrapper: the zoo's trainers and attacks call ``model(x)`` and expect a logits tensor; the wrapped
    transformers model stays reachable as ``.bert`` and works as a token-only black-box suspect on its own.
    """

    arch = "tinybert"

    def __init__(self, vocab_size: int = VOCAB_SIZE, hidden: int = 32, layers: int = 2, heads: int = 2,
                 intermediate: int = 64, max_len: int = 32, n_classes: int = N_CLASSES, dropout: float = 0.0,
                 init_range: float = 0.1) -> None:
        super().__init__(vocab_size=vocab_size, hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                         max_len=max_len, n_classes=n_classes, dropout=dropout, init_range=init_range)
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=max_len,
                            num_labels=n_classes, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                            pad_token_id=PAD, initializer_range=init_range)
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        ids = input_ids.long()  # numpy callers may hand int32; ids are never cast to float
        mask = attention_mask if attention_mask is not None else (ids != PAD).long()
        return self.bert(input_ids=ids, attention_mask=mask).logits

    def reinitialise(self, seed: int) -> "TinyBert":
        """A same-config model with fresh BERT-style initial weights (an independent model's start)."""
        torch.manual_seed(seed)
        return TinyBert(**self.config)

    def small_student(self, seed: int) -> "TinyBert":
        """A smaller BERT (1 layer, half width) with the same vocabulary and classes: a distillation student."""
        torch.manual_seed(seed)
        cfg = {**self.config, "hidden": max(16, self.config["hidden"] // 2), "layers": 1,
               "intermediate": max(32, self.config["intermediate"] // 2)}
        return TinyBert(**cfg)


def _sentence(rng: np.random.Generator) -> tuple[list[int], int]:
    """Filler words plus two topic words (label bit 0) and two sentiment words (bit 1) that a negator may flip.

    Why the negator: "not" directly BEFORE the first sentiment word flips the sentiment, so the label needs word order and
    co-occurrence, not just a bag of words; independent models learn that rule in their own way.
    """
    n_words = SEQ_LEN - 2
    words = [int(w) for w in rng.choice(FILLER, size=n_words)]
    slots = [int(s) for s in rng.choice(np.arange(1, n_words), size=4, replace=False)]
    topic, sentiment = int(rng.integers(2)), int(rng.integers(2))
    for slot in slots[:2]:
        words[slot] = int(rng.choice(TOPIC_A if topic == 0 else TOPIC_B))
    for slot in slots[2:]:
        words[slot] = int(rng.choice(POS_WORDS if sentiment else NEG_WORDS))
    first = min(slots[2:])
    if rng.random() < 0.25 and first - 1 not in slots:
        words[first - 1] = int(rng.choice(NOT_WORDS))
        sentiment = 1 - sentiment
    elif rng.random() < 0.25:  # a negator elsewhere changes nothing: position matters, not presence
        free = [i for i in range(n_words) if i not in slots and i != first - 1]
        words[int(rng.choice(free))] = int(rng.choice(NOT_WORDS))
    return [CLS, *words, SEP], 2 * sentiment + topic


def synthetic_text(n: int = 2400, seed: int = 2024) -> tuple[np.ndarray, np.ndarray, None]:
    """The ``synthtext`` dataset: (ids int64 (n, SEQ_LEN), labels int64 (n,), no continuous domain)."""
    rng = np.random.default_rng(seed)
    rows = [_sentence(rng) for _ in range(n)]
    x = np.asarray([r[0] for r in rows], dtype=np.int64)
    y = np.asarray([r[1] for r in rows], dtype=np.int64)
    return x, y, None


def random_tokens(n: int, length: int, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform word ids between [CLS] and [SEP] (what a query-only extractor without owner data would send)."""
    body = torch.randint(3, vocab_size, (n, length - 2), generator=generator)
    return torch.cat([torch.full((n, 1), CLS), body, torch.full((n, 1), SEP)], dim=1)


def token_api(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """A black-box view of a transformers classifier: int64 ids in, logits out, called with an attention mask."""

    def call(ids: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        with torch.no_grad():
            out: Any = model(input_ids=t, attention_mask=(t != PAD).long())
        return (out.logits if hasattr(out, "logits") else out).numpy()

    return call
