"""Hidden ReLU pre-activations of a torch module and Newton projection of inputs onto a neuron's boundary."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from fp_registry.errors import NotApplicableError

#: Smooth activations break the piecewise-linear premise; piecewise-linear ones (ReLU, MaxPool) keep it.
SMOOTH = (nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Mish,
          nn.Hardswish, nn.Hardsigmoid, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.LayerNorm)


def check_relu_network(model: object) -> None:
    """Raise NotApplicableError unless ``model`` is a torch module whose hidden activations are all nn.ReLU."""
    if not isinstance(model, nn.Module):
        raise NotApplicableError("TAFA needs the owner's weights (a torch nn.Module), got "
                                 f"{type(model).__name__}")
    leaves = [m for m in model.modules() if not list(m.children())]
    relus = [m for m in leaves if isinstance(m, nn.ReLU)]
    # A smooth squashing of the final output (e.g. a sigmoid head) keeps every hidden kink visible.
    hidden = leaves[:-1] if leaves else []
    smooth = sorted({type(m).__name__ for m in hidden if isinstance(m, SMOOTH) or _smooth_by_name(m)})
    if smooth:
        raise NotApplicableError(f"TAFA needs a ReLU network; the owner has non-piecewise-linear hidden "
                                 f"layer(s): {', '.join(smooth)}",
                                 "use a method that does not rely on ReLU kinks, e.g. ipguard or metav")
    if not relus:
        raise NotApplicableError("TAFA needs hidden nn.ReLU modules; none found in the owner "
                                 "(functional relu calls cannot be hooked)",
                                 "express the activations as nn.ReLU modules, or choose another method")


def _smooth_by_name(module: nn.Module) -> bool:
    """Smooth activations that are not torch classes (transformers' GELUActivation, NewGELUActivation, ...)."""
    return any(tag in type(module).__name__ for tag in ("GELU", "SiLU", "Swish", "Mish"))


@contextmanager
def capture_preactivations(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the input of every nn.ReLU during a forward pass (the hidden pre-activations z(x))."""
    store: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        store.append(inputs[0])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def preactivations(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, z) with z the flattened concatenation of all hidden pre-activations, shape (N, H)."""
    with capture_preactivations(model) as store:
        out = model(x)
    z = torch.cat([s.reshape(len(x), -1) for s in store], dim=1)
    return out, z


def neuron_value_and_grad(model: nn.Module, x: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z_{j_i}(x_i) and its input gradient, one neuron per row, in one backward pass (rows are independent)."""
    x = x.detach().clone().requires_grad_(True)
    _, z = preactivations(model, x)
    zj = z[torch.arange(len(x)), j]
    (grad,) = torch.autograd.grad(zj.sum(), x)
    return zj.detach(), grad.detach()


def project_to_boundary(model: nn.Module, x: torch.Tensor, j: torch.Tensor, steps: int = 20, tol: float = 1e-5,
                        lo: float | None = None, hi: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Newton steps x <- x - z_j grad/|grad|^2 (exact inside a linear region), clamped to [lo, hi].

    Returns the projected inputs and a mask of rows that reached |z_j| < tol (relative to the gradient norm,
    i.e. an input-space distance).
    """
    for _ in range(steps):
        zj, g = neuron_value_and_grad(model, x, j)
        g2 = g.flatten(1).pow(2).sum(1).clamp_min(1e-20)
        done = zj.abs() / g2.sqrt() < tol
        if bool(done.all()):
            break
        step = (zj / g2).reshape(-1, *[1] * (x.ndim - 1)) * g
        x = (x - step * (~done).reshape(-1, *[1] * (x.ndim - 1))).detach()
        if lo is not None and hi is not None:
            x = x.clamp(lo, hi)
    zj, g = neuron_value_and_grad(model, x, j)
    return x, zj.abs() / g.flatten(1).norm(dim=1).clamp_min(1e-10) < tol
