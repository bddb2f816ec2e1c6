"""A tiny causal language model (GPT-2 config, trained from scratch) and a locally generated synthetic language."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .nets import RefNet

#: ids 0-2 are reserved (pad / start / end, as in fp_registry.text); the language never emits them
PAD = 0
DOT = 3                        # end of sentence
N_AGREE = 4                    # agreement classes: a noun of class k takes a verb of class k
NOUNS = range(4, 36)           # 4 classes x 8 nouns
VERBS = range(36, 68)          # 4 classes x 8 verbs
WORDS = range(68, 256)         # modifier / object words, linked by a sparse Markov chain
VOCAB_SIZE = 256
CONTEXT = 12                   # tokens per query row; the label is the token that follows them
GRAMMAR_SEED = 77              # the language itself is fixed; data seeds only change the sampled text


class TinyGPT(RefNet):
    """A small ``GPT2LMHeadModel`` built from a ``GPT2Config`` (never downloaded).

    Black-box output: the next-token logits after the LAST position, shape (N, vocab). That is what an LM API
    returns (next-token log-probs), so to fingerprinting the LM is a classifier over its vocabulary (task
    "classification", output_dim = vocab). ``lm_loss`` trains every position (teacher forcing on ``x`` then
    ``y``), which ``fit`` uses when a model provides it. The transformers model stays reachable as ``.gpt``.
    """

    arch = "tinygpt"

    def __init__(self, vocab_size: int = VOCAB_SIZE, n_embd: int = 32, layers: int = 2, heads: int = 2,
                 n_positions: int = 32, dropout: float = 0.0, init_range: float = 0.02) -> None:
        super().__init__(vocab_size=vocab_size, n_embd=n_embd, layers=layers, heads=heads, n_positions=n_positions,
                         dropout=dropout, init_range=init_range)
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=vocab_size, n_embd=n_embd, n_layer=layers, n_head=heads,
                            n_positions=n_positions, n_inner=4 * n_embd, resid_pdrop=dropout, embd_pdrop=dropout,
                            attn_pdrop=dropout, initializer_range=init_range, bos_token_id=1, eos_token_id=2,
                            pad_token_id=PAD)
        self.gpt = GPT2LMHeadModel(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        ids = input_ids.long()  # numpy callers may hand int32; ids are never cast to float
        return self.gpt(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits[:, -1]

    def lm_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``y`` after ``x``, plus the causal LM loss of every earlier position, equally weighted.

        Why both: ``fit(x, y)`` asks for ``y`` (the label is the black-box output), and the earlier positions are
        free extra supervision (a plain mean over 16-token rows reached a held-out CE of 3.37 nats after 440 steps,
        the label alone 4.72; measured 2026-11-23).
        Why equal weights: with a plain mean over positions the label would be 1/CONTEXT of the loss, and an
        extractor's teacher labels (fit on its queries) would hardly shape the student at all.
        """
        logits = self.gpt(input_ids=x.long(), use_cache=False).logits
        last = F.cross_entropy(logits[:, -1], y.long())
        rest = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].long().reshape(-1))
        return 0.5 * (last + rest)

    def reinitialise(self, seed: int) -> "TinyGPT":
        """A same-config model with fresh GPT-2-style initial weights (an independent model's start)."""
        torch.manual_seed(seed)
        return TinyGPT(**self.config)

    def small_student(self, seed: int) -> "TinyGPT":
        """A smaller GPT (1 layer, half width) with the same vocabulary: a distillation student."""
        torch.manual_seed(seed)
        return TinyGPT(**{**self.config, "n_embd": max(16, self.config["n_embd"] // 2), "layers": 1})

    @torch.no_grad()
    def permute_hidden(self, g: torch.Generator) -> int:
        """Shuffle each block's MLP units and attention heads in place (same function, other weight order)."""
        d, heads = self.config["n_embd"], self.config["heads"]
        for block in self.gpt.transformer.h:
            p = torch.randperm(block.mlp.c_fc.weight.shape[1], generator=g)  # Conv1D weights are (in, out)
            block.mlp.c_fc.weight.copy_(block.mlp.c_fc.weight[:, p])
            block.mlp.c_fc.bias.copy_(block.mlp.c_fc.bias[p])
            block.mlp.c_proj.weight.copy_(block.mlp.c_proj.weight[p])
            hd = d // heads
            idx = (torch.randperm(heads, generator=g)[:, None] * hd + torch.arange(hd)).flatten()
            cols = torch.cat([part * d + idx for part in range(3)])  # the same head order for q, k and v
            block.attn.c_attn.weight.copy_(block.attn.c_attn.weight[:, cols])
            block.attn.c_attn.bias.copy_(block.attn.c_attn.bias[cols])
            block.attn.c_proj.weight.copy_(block.attn.c_proj.weight[idx])
        return 2 * len(self.gpt.transformer.h)


def _grammar() -> tuple[np.ndarray, np.ndarray]:
    """The fixed language: 3 likely successors per word, and 4 likely first objects per verb."""
    rng = np.random.default_rng(GRAMMAR_SEED)
    succ = rng.choice(WORDS, size=(len(WORDS), 3))
    obj = rng.choice(WORDS, size=(len(VERBS), 4))
    return succ, obj


def _walk(u: np.ndarray, succ: np.ndarray, start: int) -> list[int]:
    """One Markov word per pair of uniforms in ``u``: a listed successor with p 0.8, any word otherwise."""
    out, w = [], start
    for a, b in u.reshape(-1, 2):
        w = int(succ[w - WORDS.start, int(b * 3)]) if a < 0.8 else WORDS.start + int(b * len(WORDS))
        out.append(w)
    return out


def _sentence(rng: np.random.Generator, succ: np.ndarray, obj: np.ndarray) -> list[int]:
    """noun_k, 0-4 modifiers, verb_k, 1-4 object words, "."; the verb agrees with the noun across the modifiers.

    Why agreement over a gap: predicting the verb class needs the noun several positions back, so the models must
    use attention, and independently trained models learn that in their own way. One rng call per sentence keeps
    4000 rows at well under a second.
    """
    u = rng.random(24)
    k, n_mods, n_objs = int(u[0] * N_AGREE), int(u[1] * 5), int(u[2] * 4)
    noun = NOUNS.start + 8 * k + int(u[3] * 8)
    mods = _walk(u[8:8 + 2 * n_mods], succ, WORDS.start + int(u[4] * len(WORDS)))
    verb = VERBS.start + 8 * k + int(u[5] * 8)
    first = int(obj[verb - VERBS.start, int(u[7] * 4)]) if u[6] < 0.8 else WORDS.start + int(u[7] * len(WORDS))
    objects = [first] + _walk(u[16:16 + 2 * n_objs], succ, first)
    return [noun, *mods, verb, *objects, DOT]


def synthetic_lm(n: int = 2400, seed: int = 2025) -> tuple[np.ndarray, np.ndarray, None]:
    """The ``synthlm`` dataset: (context ids int64 (n, CONTEXT), next token int64 (n,), no continuous domain).

    Every row is cut at a random offset from its own freshly sampled text, so rows share no text.
    """
    rng = np.random.default_rng(seed)
    succ, obj = _grammar()
    xs = np.empty((n, CONTEXT), dtype=np.int64)
    ys = np.empty(n, dtype=np.int64)
    for i in range(n):
        stream: list[int] = []
        offset = int(rng.integers(12))
        while len(stream) < offset + CONTEXT + 1:
            stream += _sentence(rng, succ, obj)
        xs[i] = stream[offset:offset + CONTEXT]
        ys[i] = stream[offset + CONTEXT]
    return xs, ys, None


def next_token_api(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """A black-box view of a transformers causal LM: int64 ids in, next-token logits (N, vocab) out."""

    def call(ids: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        with torch.no_grad():
            out: Any = model(input_ids=t)
        logits = out.logits if hasattr(out, "logits") else out
        return (logits[:, -1] if logits.ndim == 3 else logits).numpy()

    return call
