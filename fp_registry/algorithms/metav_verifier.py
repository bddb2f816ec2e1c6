"""MetaV's meta-verifier network: features, the (optionally monotone) MLP, and its module-free forward pass."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

HIDDEN = (128, 64, 32)


def make_verifier(in_features: int, hidden: tuple[int, ...] = HIDDEN) -> nn.Sequential:
    """The meta-verifier V: MLP(N*m -> hidden... -> 1) with LeakyReLU (paper-style 128-64-32); outputs a logit."""
    layers: list[nn.Module] = []
    prev = in_features
    for width in hidden:
        layers += [nn.Linear(prev, width), nn.LeakyReLU(0.2)]
        prev = width
    layers.append(nn.Linear(prev, 1))
    return nn.Sequential(*layers)


def transform_features(out: torch.Tensor, task: str, mode: str) -> torch.Tensor:
    """Canonical (n, m) outputs -> verifier features: ``prob`` as is, ``logprob`` centred log-probabilities.

    Why logprob: saturated softmax outputs hide how confident a model is; centred log-probabilities are the
    logits up to a constant, so the verifier sees margins whatever the suspect's head returns.
    """
    if mode == "prob" or task != "classification":
        return out
    logp = out.clamp_min(1e-6).log()
    return logp - logp.mean(dim=1, keepdim=True)


def verifier_input(feats: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, signed: bool) -> torch.Tensor:
    """Normalised features; for the monotone verifier their magnitude (distance to the reference per output)."""
    z = (feats - shift) / scale
    return z if signed else z.abs()


class _NonNeg(nn.Module):
    """Parametrisation ``w -> sign * |w|``: non-negative hidden weights, non-positive output weights."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.sign * w.abs()


def make_monotone(verifier: nn.Sequential) -> None:
    """Constrain V to be non-increasing in every input: monotone activations, |w| inside, -|w| at the output.

    Why: with inputs |f(I) - f0(I)|, the owner itself (all zeros) then gets the highest possible logit and a
    suspect can never look *more* derived by moving further from the owner, the failure mode of a free MLP
    that extrapolates from ~15 training negatives.
    """
    from torch.nn.utils import parametrize

    linears = [m for m in verifier if isinstance(m, nn.Linear)]
    for layer in linears:
        parametrize.register_parametrization(layer, "weight", _NonNeg(-1.0 if layer is linears[-1] else 1.0))


def plain_state(verifier: nn.Sequential) -> dict[str, torch.Tensor]:
    """The verifier's effective weights under plain ``make_verifier`` keys (parametrisations resolved)."""
    out = {}
    for i, layer in enumerate(verifier):
        if isinstance(layer, nn.Linear):
            out[f"{i}.weight"] = layer.weight.detach().clone()
            out[f"{i}.bias"] = layer.bias.detach().clone()
    return out


def numpy_layers(v: dict[str, torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W^T, b) per layer in float64, contiguous, for ``apply_numpy`` (made once per fingerprint)."""
    n_layers = sum(1 for k in v if k.endswith(".weight"))
    return [(np.ascontiguousarray(v[f"{2 * i}.weight"].double().numpy().T), v[f"{2 * i}.bias"].double().numpy())
            for i in range(n_layers)]


def apply_numpy(layers: list[tuple[np.ndarray, np.ndarray]], z: np.ndarray) -> np.ndarray:
    """``make_verifier``'s forward pass from its weights, in numpy: tiny matmuls cost less than torch's dispatch."""
    for i, (w, b) in enumerate(layers):
        z = z @ w + b
        if i < len(layers) - 1:
            z = np.where(z >= 0, z, 0.2 * z)
    return z


def numpy_features(out: np.ndarray, task: str, mode: str) -> np.ndarray:
    """:func:`transform_features` in numpy float64, for one suspect's canonical outputs."""
    if mode == "prob" or task != "classification":
        return out
    logp = np.log(np.maximum(out, 1e-6))
    return logp - np.add.reduce(logp, axis=1, keepdims=True) / logp.shape[1]  # ndarray.mean's wrapper is slow
