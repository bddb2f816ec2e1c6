"""MetaV for token-id owners: per-position vocabulary logits, fed to zoo models as straight-through one-hots."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fp_registry.errors import NotApplicableError, ShapeMismatchError
from fp_registry.methods import Owner


class TokenQueries(nn.Module):
    """Learnable logits over a vocabulary pool per editable position; ``forward`` gives straight-through one-hots.

    Why straight-through: the forward value is a hard one-hot, so every zoo model sees real token ids (no gap
    between what is optimised and the ids saved in the artifact); the backward pass uses the softmax gradient,
    i.e. a first-order estimate of how swapping each token would move the loss (as HotFlip). The first and last
    positions ([CLS]/[SEP]) stay fixed.
    """

    def __init__(self, init_ids: torch.Tensor, pool: torch.Tensor, vocab: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("pool", pool.long())
        self.register_buffer("ends", init_ids[:, [0, -1]].long())
        self.vocab = vocab
        where = (init_ids[:, 1:-1, None] == self.pool).float()  # (n, L-2, P): the seed ids inside the pool
        self.w = nn.Parameter(scale * where)

    def ids(self) -> torch.Tensor:
        """The current hard token ids (n, L), int64."""
        body = self.pool[self.w.argmax(-1)]
        return torch.cat([self.ends[:, :1], body, self.ends[:, 1:]], dim=1)

    def forward(self) -> torch.Tensor:
        soft = torch.softmax(self.w, dim=-1)
        hard = F.one_hot(self.w.argmax(-1), soft.shape[-1]).to(soft.dtype)
        body = hard + soft - soft.detach()  # value: hard one-hot; gradient: softmax's
        full = _scatter_vocab(body, self.pool, self.vocab)
        ends = F.one_hot(self.ends, self.vocab).to(soft.dtype)
        return torch.cat([ends[:, :1], full, ends[:, 1:]], dim=1)


def _scatter_vocab(body: torch.Tensor, pool: torch.Tensor, vocab: int) -> torch.Tensor:
    """(n, L, P) weights over the pool -> (n, L, vocab) weights over the whole vocabulary (zeros elsewhere)."""
    full = body.new_zeros(*body.shape[:2], vocab)
    return full.index_add(2, pool, body)


def token_pool(owner: Owner) -> torch.Tensor:
    """Ids a real sentence holds between its first and last position (never [CLS]/[SEP]-only ids elsewhere)."""
    if owner.data is None:
        raise NotApplicableError("metav on token ids needs owner sentences (data=token ids) to know the vocabulary")
    data = owner.data.reshape(len(owner.data), -1)
    if data.shape[1] < 3:
        raise NotApplicableError("metav on token ids needs sequences of at least 3 tokens (fixed first and last)")
    return torch.unique(data[:, 1:-1])


def init_ids(owner: Owner, n: int, pool: torch.Tensor, mixed: bool, gen: torch.Generator) -> torch.Tensor:
    """Owner sentences, the second half with uniformly random pool ids inside (``mixed``), as MetaV's float init.

    Why random sentences: off-distribution inputs are where a model's own quirks live (copied by distillation,
    not shared by independent models); owner sentences keep the on-distribution half.
    """
    data = owner.data.reshape(len(owner.data), -1)
    rows = data[torch.randint(len(data), (n,), generator=gen)].clone()
    if mixed:
        k = n // 2
        rows[k:, 1:-1] = pool[torch.randint(len(pool), (n - k, rows.shape[1] - 2), generator=gen)]
    return rows


def word_embedding(module: nn.Module) -> nn.Embedding | None:
    """The input-token embedding: a transformers model's ``get_input_embeddings``, else the first nn.Embedding."""
    for sub in module.modules():
        getter = getattr(sub, "get_input_embeddings", None)
        if callable(getter):
            try:
                emb = getter()
            except (NotImplementedError, AttributeError):
                continue
            if isinstance(emb, nn.Embedding):
                return emb
    return next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)


class OneHotFeed:
    """Routes a relaxed one-hot through ``module``'s word embedding: ``onehot @ E`` replaces the lookup ``E[ids]``.

    Why a forward hook rather than ``inputs_embeds``: the model's own forward then runs on the hard ids (its
    attention mask, position and type embeddings are exactly what a suspect computes), works for any module with
    an input embedding, and ``E`` is the (possibly perturbed) weight ``functional_call`` substitutes.
    """

    def __init__(self, module: nn.Module) -> None:
        self.embedding = word_embedding(module)
        usable = self.embedding is not None and self.embedding.weight.is_floating_point()
        self.onehot: torch.Tensor | None = None
        self.handle = self.embedding.register_forward_hook(self._hook) if usable else None

    @property
    def usable(self) -> bool:
        return self.handle is not None

    def _hook(self, mod: nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor | None:
        x = self.onehot
        if x is None or tuple(inputs[0].shape) != tuple(x.shape[:2]):
            return None  # another call of the embedding (not our queries): leave it alone
        weight = mod.weight
        if x.shape[-1] < weight.shape[0]:
            x = F.pad(x, (0, weight.shape[0] - x.shape[-1]))
        elif x.shape[-1] > weight.shape[0]:
            raise ShapeMismatchError(f"a zoo model has a vocabulary of {weight.shape[0]} tokens, the queries use "
                                     f"ids up to {x.shape[-1] - 1}")
        return (x @ weight.to(x.dtype)).to(out.dtype)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
