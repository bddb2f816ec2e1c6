"""MetaV's meta-verifier network: features, the (optionally monotone) MLP, and its module-free forward pass."""
from __future__ import annotations

import functools
from typing import Any

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


def suspect_features(suspect: Any, x: torch.Tensor, task: str, output_dim: int, mode: str) -> np.ndarray:
    """One suspect's flat verifier features: :func:`transform_features` of its outputs, computed in numpy."""
    if task == "classification" and mode == "logprob":
        logp = suspect.log_probs(x, output_dim)
        if logp.shape[1] <= 32:  # one small matmul: fewer array calls than subtracting the row means
            return (logp @ centring_matrix(logp.shape[1])).ravel()
        return (logp - np.add.reduce(logp, axis=1, keepdims=True) / logp.shape[1]).ravel()  # mean()'s wrapper is slow
    return suspect.outputs(x, task, output_dim).numpy().ravel()


@functools.lru_cache(maxsize=8)
def centring_matrix(m: int) -> np.ndarray:
    """(m, m) float32 matrix that subtracts each row's mean: ``logp @ C = logp - mean(logp, axis=1)``."""
    return (np.eye(m) - 1.0 / m).astype(np.float32)


class NumpyVerifier:
    """The stored verifier as a numpy function of flat features -> logit, made once per fingerprint.

    Why: on a tiny suspect every array call after its forward pass shows in the verify/forward ratio. For the
    default verifier (linear on ``|z|``, positive scales) the normalisation folds into the weights,
    ``|f - shift| / scale @ w = |f - shift| @ (w / scale)``, which leaves three array calls.
    """

    def __init__(self, v: dict[str, torch.Tensor], signed: bool) -> None:
        self.layers = numpy_layers(v)
        self.shift = v["shift"].double().numpy().ravel()
        self.scale = v["scale"].double().numpy().ravel()
        self.signed = signed
        self.n_features = self.shift.size
        self.folded = None
        if len(self.layers) == 1 and not signed and bool((self.scale > 0).all()):
            self.folded = (self.layers[0][0].ravel() / self.scale, float(self.layers[0][1][0]))

    def __call__(self, feats: np.ndarray) -> float:
        if self.folded is not None:
            d = feats - self.shift
            np.abs(d, out=d)
            return float(d @ self.folded[0]) + self.folded[1]
        z = (feats - self.shift) / self.scale
        return float(apply_numpy(self.layers, z if self.signed else np.abs(z)).item())
