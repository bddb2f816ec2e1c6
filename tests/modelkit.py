"""Small model helpers shared by test modules."""
from __future__ import annotations

import copy

import torch


def noised(model: torch.nn.Module, seed: int, sigma: float) -> torch.nn.Module:
    """A derived copy: Gaussian noise of ``sigma`` x each parameter's mean magnitude on every weight."""
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(sigma * p.abs().mean() * torch.randn(p.shape, generator=g))
    return m.eval()
