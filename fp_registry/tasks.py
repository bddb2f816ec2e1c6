"""What a task means to a fingerprint: how outputs are canonicalised and how a model of it is trained."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UsageError

TASKS = ("classification", "regression", "generation")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", f"use one of: {', '.join(TASKS)}")
    return task


def canonicalize(task: str, out: torch.Tensor) -> torch.Tensor:
    """Map raw outputs to a stable (N, m) float32 form: probabilities for classifiers, values otherwise.

    Why: suspects return logits, probabilities or labels depending on how they were exported or served;
    verifiers must see the same representation whatever the suspect's head looks like.
    """
    # Why the guards: each no-op detach/cast/reshape is a dispatch that a tiny model's forward pass would notice
    if out.requires_grad:
        out = out.detach()
    if out.dtype != torch.float32:
        out = out.to(torch.float32)
    if task != "classification":
        return out if out.ndim == 2 else out.reshape(out.shape[0], -1)
    if out.ndim == 1:  # label-only API: one-hot, the number of classes is fixed by the caller
        raise ValueError("label outputs need the class count; use canonicalize_labels")
    out = out.reshape(out.shape[0], -1)
    return out.clamp_min(0) if looks_like_probs(out.numpy()) else torch.softmax(out, dim=1)


def looks_like_probs(a: np.ndarray) -> bool:
    """Whether (N, m) outputs are probabilities already (non-negative rows summing to 1) rather than logits.

    Why numpy on the tensor's own memory: torch's reductions + bool() sync cost more than a tiny forward, and
    logits (almost always negative somewhere) stop at the first, cheapest test.
    """
    if a.size == 0:
        return True
    if a.item(0) < -1e-6:  # a negative entry: logits, known without a pass over the array
        return False
    if not a.min() >= -1e-6:
        return False
    return bool(np.abs(a.sum(1) - 1.0).max() <= 1e-3 + 1e-5)  # np.allclose(rtol=1e-5, atol=1e-3) at 1.0


def log_scores(a: np.ndarray) -> np.ndarray:
    """Class log-scores of (N, m) classifier outputs: the log-probabilities up to a per-row constant.

    Logits are returned as they are (log-softmax only subtracts a per-row constant), probabilities as their
    log. Why: a method that centres each row (TAFA's kinks) then needs neither a softmax nor a log, and
    confident logits keep their margins instead of underflowing to log(0).
    """
    return np.log(np.maximum(a, 1e-38)) if looks_like_probs(a) else a


def canonicalize_labels(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """One-hot probabilities from top-1 labels (a label-only black box)."""
    return F.one_hot(labels.long().reshape(-1), n_classes).to(torch.float32)


def mmd_loss(fake: torch.Tensor, real: torch.Tensor, scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """Maximum mean discrepancy with a mix of RBF kernels: a stable, adversary-free generator loss."""
    x = torch.cat([fake, real])
    d2 = torch.cdist(x, x).pow(2)
    k = sum(torch.exp(-d2 / (2 * s * s * x.shape[1] / 16)) for s in scales)
    n = len(fake)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


@dataclass(frozen=True)
class TaskLoss:
    """A supervised loss for attacks that fine-tune; generation matches the data distribution."""

    task: str

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor | None) -> torch.Tensor:
        out = model(x)
        if self.task == "classification":
            return F.cross_entropy(out, y.long())
        if self.task == "regression":
            return F.mse_loss(out.reshape(len(out), -1), y.reshape(len(y), -1).float())
        return mmd_loss(out.reshape(len(out), -1), y.reshape(len(y), -1).float())


def soft_target_loss(task: str, student_out: torch.Tensor, teacher_out: torch.Tensor,
                     temperature: float = 2.0) -> torch.Tensor:
    """Distillation loss from outputs alone (task-agnostic: KL for classifiers, MSE otherwise)."""
    if task == "classification":
        t = temperature
        return F.kl_div(F.log_softmax(student_out / t, 1), F.softmax(teacher_out / t, 1),
                        reduction="batchmean") * t * t
    return F.mse_loss(student_out.reshape(len(student_out), -1), teacher_out.reshape(len(teacher_out), -1))
