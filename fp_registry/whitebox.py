"""White-box evidence for a (owner, suspect) pair with weights: REEF-style CKA on hidden states, permutation-invariant
weight Grams, each turned into a p-value by a null fitted on independent models."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

P_FLOOR = 1e-12  # smallest normal-tail p-value reported
MAX_ROWS = 2048  # token rows per layer kept for CKA: enough for a stable estimate, cheap on CPU


# ----------------------------------------------------------------------------------------------- representations
def _transformer(model: nn.Module) -> tuple[nn.Module | None, int]:
    """The wrapped transformers model (ours keep it as ``.bert``) and its padding id, or (None, 0)."""
    inner = getattr(model, "bert", model)
    if hasattr(inner, "config") and hasattr(getattr(inner, "config"), "num_hidden_layers"):
        pad = getattr(model, "pad_id", getattr(inner.config, "pad_token_id", 0))
        return inner, int(pad or 0)
    return None, 0


def hidden_states(model: nn.Module, x: torch.Tensor, max_rows: int = MAX_ROWS, seed: int = 0) -> list[torch.Tensor]:
    """Per-layer representations on ``x``, each (rows, features) float64.

    Transformers models: every hidden state (embeddings + each block) at the non-padding tokens, a fixed random subset
    of at most ``max_rows`` tokens (the same rows for any model, since they depend on ``x`` only). Other torch modules:
    the flattened output of every Linear / Conv layer, one row per input.
    """
    inner, pad = _transformer(model)
    model.eval()
    with torch.no_grad():
        if inner is not None:
            ids = x.long()
            mask = ids != pad
            out = inner(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
            rows = mask.flatten().nonzero().flatten()
            if len(rows) > max_rows:
                gen = torch.Generator().manual_seed(seed)
                rows = rows[torch.randperm(len(rows), generator=gen)[:max_rows].sort().values]
            return [h.reshape(-1, h.shape[-1])[rows].double() for h in out.hidden_states]
        return _hooked_outputs(model, x)


def _hooked_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    got: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, o: got.append(o.reshape(len(o), -1).double()))
               for m in layers]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return got


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between row-aligned feature matrices; invariant to rotation and scale."""
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    cross = (b.T @ a).pow(2).sum()
    norm = (a.T @ a).pow(2).sum().sqrt() * (b.T @ b).pow(2).sum().sqrt()
    return float(cross / norm) if float(norm) > 0 else 0.0


def cka_evidence(owner: nn.Module, suspect: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """CKA of every owner layer with every suspect layer; score = mean over owner layers of the best-matching one.

    Why best match: a pruned or distilled suspect may have its layers shifted; REEF compares one chosen layer, we keep
    the whole matrix as evidence and summarise it without assuming the suspect's depth.
    """
    ho, hs = hidden_states(owner, x), hidden_states(suspect, x)
    if not ho or not hs or ho[0].shape[0] != hs[0].shape[0]:
        return {"score": 0.0, "layers": [], "reason": "no comparable hidden states"}
    mat = np.array([[linear_cka(a, b) for b in hs] for a in ho])
    best = mat.max(1)
    return {"score": float(best.mean()), "best_per_owner_layer": [round(float(v), 4) for v in best],
            "best_suspect_layer": [int(i) for i in mat.argmax(1)]}


def probe_inputs(model: nn.Module, n: int = 64, seq_len: int = 16, seed: int = 0) -> torch.Tensor:
    """Owner-free probes: random token ids for token models (no padding, ids from 1), N(0, 1) rows otherwise."""
    from .methods import _module_input_shape, takes_tokens

    gen = torch.Generator().manual_seed(seed)
    if takes_tokens(model):
        inner, _ = _transformer(model)
        emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
        vocab = int(inner.config.vocab_size) if inner is not None else int(emb.num_embeddings if emb else 2)
        return torch.randint(1, vocab, (n, seq_len), generator=gen)
    shape = _module_input_shape(model)
    if shape is None:
        raise ValueError("cannot infer the model's input shape for probe inputs")
    return torch.randn(n, *shape, generator=gen)


# ----------------------------------------------------------------------------------------------------- weights
def weight_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """2-D weights of every Linear-like layer, in module order; dynamic-int8 layers are dequantised."""
    found = []
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if callable(w) and not isinstance(w, torch.Tensor):  # torch.ao dynamic quantized Linear: weight() method
            try:
                w = w()
            except (RuntimeError, TypeError):
                continue
            w = w.dequantize() if getattr(w, "is_quantized", False) else w
        if isinstance(w, torch.Tensor) and w.ndim == 2 and not isinstance(module, nn.Embedding):
            found.append((name, w.detach().double()))
    return found


def _offdiag_corr(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """Pearson correlation of the off-diagonal entries of two Gram matrices.

    Why off-diagonal only: W^T W of any well-scaled matrix is close to c * I, so the diagonal makes unrelated Grams
    look alike (the LayerNorm-cosine trap of methods.md section 9); the off-diagonal couples are what training wrote.
    """
    n = g1.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool)
    a, b = g1[keep], g2[keep]
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a @ b) / denom) if denom > 0 else 0.0


def gram_similarity(w1: torch.Tensor, w2: torch.Tensor) -> float:
    """Best of the two Gram views of a weight pair: W^T W ignores a permutation of the rows (output neurons),
    W W^T one of the columns (input neurons); so permuting the hidden neurons on either side changes nothing."""
    return max(_offdiag_corr(w1.T @ w1, w2.T @ w2), _offdiag_corr(w1 @ w1.T, w2 @ w2.T))


def weight_evidence(owner: nn.Module, suspect: nn.Module) -> dict[str, Any]:
    """Mean Gram similarity over same-shape weight matrices paired in module order (0 when none match)."""
    wo, ws = weight_matrices(owner), weight_matrices(suspect)
    sims = [gram_similarity(a, b) for (_, a), (_, b) in zip(wo, ws) if a.shape == b.shape]
    if not sims:
        return {"score": 0.0, "matched": 0, "reason": "no same-shape weight matrices"}
    return {"score": float(np.mean(sims)), "matched": len(sims), "of": len(wo), "min": float(np.min(sims))}


# --------------------------------------------------------------------------------------------------- p-values
@dataclass
class Null:
    """Scores of independent models for one statistic; turns a suspect's score into p-values.

    ``empirical``: (1 + #{null >= s}) / (1 + n), exact under exchangeability, never below 1 / (n + 1).
    ``normal``: upper tail of a normal fitted to the null's Fisher-z scores (atanh); reaches small p-values with few
    independents, but only as far as the normal shape of the null holds: an extrapolation, reported beside the other
    and never below ``P_FLOOR``.
    """

    scores: list[float] = field(default_factory=list)

    def empirical(self, score: float) -> float | None:
        if not self.scores:
            return None
        return (1 + sum(s >= score for s in self.scores)) / (1 + len(self.scores))

    def normal(self, score: float) -> float | None:
        if len(self.scores) < 2:
            return None
        z = np.arctanh(np.clip(np.asarray(self.scores, dtype=float), -0.999999, 0.999999))
        mu, sd = float(z.mean()), float(z.std(ddof=1)) or 1e-6
        t = (float(np.arctanh(np.clip(score, -0.999999, 0.999999))) - mu) / sd
        # floored: far beyond the null's range the tail is an extrapolation, and 0.0 would claim certainty
        return max(0.5 * math.erfc(t / math.sqrt(2)), P_FLOOR)


def evidence(owner: nn.Module, suspect: nn.Module, x: torch.Tensor,
             nulls: dict[str, Null] | None = None) -> dict[str, Any]:
    """Both white-box statistics for one suspect, with p-values when ``nulls`` (from :func:`fit_nulls`) are given."""
    out = {"cka": cka_evidence(owner, suspect, x), "weights": weight_evidence(owner, suspect)}
    for key, ev in out.items():
        null = (nulls or {}).get(key)
        if null is not None:
            ev["p_empirical"], ev["p_normal"] = null.empirical(ev["score"]), null.normal(ev["score"])
    return out


def fit_nulls(owner: nn.Module, independents: list[nn.Module], x: torch.Tensor) -> dict[str, Null]:
    """Nulls of both statistics from independent models (never the suspects that are later tested)."""
    scores = [evidence(owner, m, x) for m in independents]
    return {key: Null([s[key]["score"] for s in scores]) for key in ("cka", "weights")}
