"""Function-preserving permutation of hidden units for sequential Linear / Conv (+ norm) networks."""
from __future__ import annotations

import torch
from torch import nn

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)


def _group_perm(n: int, groups: int, g: torch.Generator) -> torch.Tensor:
    """A permutation that keeps each channel inside its normalisation group (GroupNorm statistics stay)."""
    size = n // groups
    return torch.cat([k * size + torch.randperm(size, generator=g) for k in range(groups)])


@torch.no_grad()
def _permute_out(layer: nn.Module, p: torch.Tensor) -> None:
    layer.weight.copy_(layer.weight[p])
    if getattr(layer, "bias", None) is not None:
        layer.bias.copy_(layer.bias[p])


@torch.no_grad()
def _permute_norm(norm: nn.Module, p: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(norm, name, None)
        if t is not None:
            t.copy_(t[p])


@torch.no_grad()
def _permute_in(layer: nn.Module, p: torch.Tensor) -> None:
    n_in, n = layer.weight.shape[1], len(p)
    if n_in == n:
        layer.weight.copy_(layer.weight[:, p])
        return
    block = n_in // n  # a flatten between conv and linear: channel-major blocks of spatial positions
    idx = (p[:, None] * block + torch.arange(block)[None, :]).flatten()
    layer.weight.copy_(layer.weight[:, idx])


def permute_hidden(model: nn.Module, g: torch.Generator) -> int:
    """Shuffle every hidden layer's units in place; return how many layers were permuted.

    Assumes modules are defined in execution order (true for the reference nets); the caller checks that
    outputs are unchanged, because an arbitrary graph may break that assumption.
    """
    seq = [m for m in model.modules() if isinstance(m, _WEIGHTED + _NORMS)]
    changed = 0
    for i, layer in enumerate(seq):
        if not isinstance(layer, _WEIGHTED):
            continue
        nxt = next((j for j in range(i + 1, len(seq)) if isinstance(seq[j], _WEIGHTED)), None)
        if nxt is None:
            break
        norms = seq[i + 1:nxt]
        n_out = layer.weight.shape[0]
        if seq[nxt].weight.shape[1] % n_out:
            continue
        groups = next((n.num_groups for n in norms if isinstance(n, nn.GroupNorm)), 1)
        p = _group_perm(n_out, groups, g) if groups > 1 else torch.randperm(n_out, generator=g)
        _permute_out(layer, p)
        for norm in norms:
            _permute_norm(norm, p)
        _permute_in(seq[nxt], p)
        changed += 1
    return changed


def check_preserved(before: nn.Module, after: nn.Module, x: torch.Tensor, atol: float = 1e-4) -> bool:
    """True when both models give the same outputs on ``x``."""
    with torch.no_grad():
        return bool(torch.allclose(before.eval()(x), after.eval()(x), atol=atol))
