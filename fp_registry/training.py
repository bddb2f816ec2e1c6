"""Small CPU trainers shared by the scenarios, the zoo's attacks and independent models."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .tasks import TaskLoss


def fit(model: nn.Module, task: str, x: torch.Tensor | None, y: torch.Tensor | None, *, epochs: int = 30,
        lr: float = 1e-3, batch_size: int = 64, seed: int = 0, latent_dim: int | None = None,
        params: list[nn.Parameter] | None = None, weight_decay: float = 0.0, steps: int | None = None) -> nn.Module:
    """Train in place with Adam on the task's loss and return the model in eval mode.

    For generation ``x`` is ignored: each step draws latents of ``latent_dim`` and matches ``y`` (real samples).
    """
    gen = torch.Generator().manual_seed(seed)
    loss_fn = TaskLoss(task)
    target = y if task == "generation" else x
    n = len(target)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    total = steps if steps is not None else epochs * max(1, (n + batch_size - 1) // batch_size)
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(total):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        if task == "generation":
            xb = torch.randn(len(idx), latent_dim or 16, generator=gen)
            loss = loss_fn(model, xb, y[idx])
        elif task == "classification" and hasattr(model, "lm_loss"):  # a causal LM learns every position of a row
            loss = model.lm_loss(x[idx], y[idx])
        else:
            loss = loss_fn(model, x[idx], None if y is None else y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """A fresh copy of the same architecture with new random weights (an independent model's start)."""
    if hasattr(model, "reinitialise"):  # models with their own init scheme (BERT), not torch's per-layer defaults
        return model.reinitialise(seed)
    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return fresh


@torch.no_grad()
def evaluate_utility(model: nn.Module, task: str, x: torch.Tensor, y: torch.Tensor | None,
                     latent_dim: int | None = None) -> dict[str, float]:
    """Accuracy for classifiers, MSE for regressors, MMD to real data for generators."""
    from .tasks import mmd_loss

    model.eval()
    if task == "generation":
        z = torch.randn(len(y), latent_dim or 16, generator=torch.Generator().manual_seed(0))
        return {"mmd": float(mmd_loss(model(z).reshape(len(y), -1), y.reshape(len(y), -1)))}
    out = model(x)
    if task == "classification":
        return {"accuracy": float((out.argmax(1) == y).float().mean())}
    return {"mse": float(((out.reshape(len(out), -1) - y.reshape(len(y), -1)) ** 2).mean())}


class frozen:
    """Freeze a model's parameters while inputs are optimised through it, then restore each flag as it was."""

    def __init__(self, model: nn.Module) -> None:
        self.params = list(model.parameters())

    def __enter__(self) -> None:
        self.flags = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.params, self.flags):
            p.requires_grad_(flag)


class one_thread:
    """Run with one torch intra-op thread, then restore the caller's setting.

    Why: zoo members and MetaV's training are tiny ops; with more threads than free cores OpenMP workers spin
    while waiting: a 5-epoch digits-cnn fit took 15.9 s CPU / 36.9 s wall with 2 threads against 0.9 s / 2.3 s
    with 1 on the shared 2-core machine (measured 2026-11-23).
    """

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)
