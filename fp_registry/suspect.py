"""Query any suspect (module, callable, URI) in batches, in eval mode, with canonicalised outputs."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import ShapeMismatchError
from .tasks import canonicalize, canonicalize_labels


class Suspect:
    """A model under audit; only its outputs are used unless a method asks for ``module`` (white box)."""

    def __init__(self, model: Any, name: str = "", batch_size: int = 256, allow_pickle: bool = False) -> None:
        if isinstance(model, Suspect):
            model, name = model.model, name or model.name
        if isinstance(model, str):
            from .loading import load_model

            name = name or model
            model = load_model(model, allow_pickle=allow_pickle)
        if not callable(model):
            raise ShapeMismatchError(f"suspect {name or type(model).__name__} is not callable")
        self.model = model
        self.name = name or type(model).__name__
        self.batch_size = batch_size
        self.n_queries = 0

    @property
    def module(self) -> nn.Module | None:
        """The torch module for white-box methods, or None for a pure black box."""
        return self.model if isinstance(self.model, nn.Module) else None

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for a batch of inputs, batched; falls back to one-by-one for fixed-batch programs."""
        self.n_queries += len(x)
        chunks, size, start = [], self.batch_size, 0
        with _eval_mode(self.module), torch.no_grad():
            while start < len(x):
                part = x[start:start + size]
                try:
                    out = self._call(part)
                except (RuntimeError, ValueError, AssertionError) as exc:  # export guards raise AssertionError
                    if size == 1:
                        raise ShapeMismatchError(f"suspect {self.name} failed on inputs of shape "
                                                 f"{tuple(part.shape[1:])}: {str(exc).splitlines()[0][:160]}") from exc
                    size = 1  # e.g. a pt2 program exported with a one-row example accepts batch 1 only
                    continue
                chunks.append(out)
                start += len(part)
        return torch.cat(chunks)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, nn.Module):
            out = self.model(x)
        else:
            out = self.model(x.numpy())
        if isinstance(out, (tuple, list)) and out and not isinstance(out[0], (int, float)):
            out = out[0]
        if isinstance(out, dict):
            out = out.get("logits", next(iter(out.values())))
        if hasattr(out, "logits"):
            out = out.logits
        return torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).to(torch.float32)

    def outputs(self, x: torch.Tensor, task: str, output_dim: int) -> torch.Tensor:
        """Canonical outputs (N, output_dim); a wrong output size is a clear error, not a stack trace."""
        raw = self.raw(x)
        if task == "classification" and (raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1 and output_dim > 1)):
            out = canonicalize_labels(raw.round().clamp(0, output_dim - 1), output_dim)
        else:
            out = canonicalize(task, raw)
        if out.shape[1] != output_dim:
            raise ShapeMismatchError(f"suspect {self.name} returns {out.shape[1]} outputs per input, "
                                     f"the fingerprint expects {output_dim}")
        return out

    def labels(self, x: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
        """Top-1 labels (what a label-only API returns); ``n_classes`` checks the output width."""
        raw = self.raw(x)
        if raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1 and n_classes != 1):
            out = raw.round().long().reshape(-1)
            width = int(out.max()) + 1 if len(out) else 0
        else:
            out = raw.reshape(len(raw), -1).argmax(1)
            width = raw.reshape(len(raw), -1).shape[1]
        if n_classes is not None and (width > n_classes or (raw.ndim == 2 and raw.shape[1] > 1
                                                             and width != n_classes)):
            raise ShapeMismatchError(f"suspect {self.name} returns {width} classes, the fingerprint expects "
                                     f"{n_classes}")
        return out


class _eval_mode:
    """Put a module in eval mode for the duration of a query and restore its previous mode after."""

    def __init__(self, module: nn.Module | None) -> None:
        self.module = module

    def __enter__(self) -> None:
        self.was_training = bool(self.module is not None and self.module.training)
        if self.module is not None:
            _set_mode(self.module, training=False)

    def __exit__(self, *exc: Any) -> None:
        if self.module is not None and self.was_training:
            _set_mode(self.module, training=True)


def _set_mode(module: nn.Module, training: bool) -> None:
    # Modules unpacked from torch.export programs refuse .eval()/.train(); they are frozen in export mode already.
    try:
        module.train(training)
    except NotImplementedError:
        pass


def as_callable(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """Identity helper for type checkers: any numpy-in / array-out function is a valid suspect."""
    return fn
