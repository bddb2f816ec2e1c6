"""Query any suspect (module, callable, URI) in batches, in eval mode, with canonicalised outputs."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import ShapeMismatchError
from .tasks import canonicalize, canonicalize_labels, log_scores, looks_like_probs


# log(1e-6) as numpy casts the Python float for a float32 array (NEP 50), so results are the same bits; a 0-d
# array skips that cast on every call, which a tiny model's verify/forward ratio notices.
_LOG_FLOOR = np.array(math.log(1e-6), dtype=np.float32)
_LOG_FLOOR.flags.writeable = False


class Suspect:
    """A model under audit; only its outputs are used unless a method asks for ``module`` (white box)."""

    def __init__(self, model: Any, name: str = "", batch_size: int = 1024, allow_pickle: bool = False,
                 load_config: dict[str, Any] | None = None) -> None:
        if isinstance(model, (Suspect, str)):  # one test for the common case: a module or callable as it is
            model, name = _unwrap(model, name, allow_pickle, load_config)
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
        """Outputs for a batch of inputs, in eval mode without autograd; falls back to one-by-one for fixed-batch
        programs. Every submodule gets its previous training mode back, and the caller its grad mode.

        Why the mode switches inline, with torch's C-level grad switch: ``no_grad()`` and ``set_grad_enabled()``
        are Python classes that build further objects on enter and exit, and after a tiny model's forward pass
        each extra call runs cold and shows in the verify/forward ratio.
        """
        n = x.shape[0]  # not len(x): Tensor.__len__ is a Python method with torch-function checks
        self.n_queries += n
        training = _training_modules(self.model) if isinstance(self.model, nn.Module) else []
        if training:  # not always train(False): its walk through nn.Module.__setattr__ outweighs a tiny forward
            _set_mode(self.model, training=False)
        grad = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)  # what torch.no_grad() does, minus its wrapper objects
        try:
            if n <= self.batch_size:  # the common case: one chunk, no copy through torch.cat
                try:
                    return self._call(x)
                except (RuntimeError, ValueError, AssertionError):  # export guards raise AssertionError
                    pass  # retried row by row below, which also words the error
            return self._chunked(x)
        finally:
            torch._C._set_grad_enabled(grad)
            for module in training:
                if not module.training:
                    _set_mode(module, training=True, recurse=False)

    def _chunked(self, x: torch.Tensor) -> torch.Tensor:
        chunks, size, start = [], self.batch_size, 0
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
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, nn.Module):
            out = self.model(x)
            if type(out) is torch.Tensor:  # fast path: a plain module returning logits
                return out if out.dtype == torch.float32 else out.to(torch.float32)
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
        if task == "classification" and _label_only(raw, output_dim):
            out = _one_hot(raw, output_dim)
        else:
            out = canonicalize(task, raw)
        if out.shape[1] != output_dim:
            raise ShapeMismatchError(f"suspect {self.name} returns {out.shape[1]} outputs per input, "
                                     f"the fingerprint expects {output_dim}")
        return out

    def log_probs(self, x: torch.Tensor, output_dim: int, floor: float = 1e-6) -> np.ndarray:
        """A classifier's log-probabilities (N, output_dim) as float32 numpy, floored at ``log(floor)``.

        Equal to ``log(max(outputs(), floor))`` up to float rounding. Why a separate path: on logits it is one
        log-softmax instead of a softmax, a probability test and a log, which on a tiny model cost about as much
        as the suspect's forward pass.
        """
        raw = self.raw(x)
        shape = raw.shape
        if len(shape) == 2 and shape[1] == output_dim > 1 and not raw.requires_grad:  # raw() gives float32
            flat = raw  # the common case in one test: what _class_matrix would return unchanged
        elif _label_only(raw, output_dim):
            return np.log(np.maximum(_one_hot(raw, output_dim).numpy(), floor))
        else:
            flat = self._class_matrix(raw, output_dim)
        logp = torch.log_softmax(flat, dim=1).numpy()
        if not _wider_than_probabilities(logp) and looks_like_probs(flat.numpy()):
            return np.log(np.maximum(flat.numpy(), floor))
        low = _LOG_FLOOR if floor == 1e-6 else math.log(floor)
        return np.maximum(logp, low, out=logp)  # numpy's in-place call is cheaper than torch's

    def log_scores(self, x: torch.Tensor, output_dim: int) -> np.ndarray:
        """A classifier's class log-scores (N, output_dim) as float32 numpy; see :func:`tasks.log_scores`."""
        raw = self.raw(x)
        if _label_only(raw, output_dim):
            return np.log(np.maximum(_one_hot(raw, output_dim).numpy(), 1e-38))
        return log_scores(self._class_matrix(raw, output_dim).numpy())

    def _class_matrix(self, raw: torch.Tensor, output_dim: int) -> torch.Tensor:
        """Raw class outputs as a detached float32 (N, output_dim) tensor; a wrong width is a one-line error.

        Why the guards: each no-op detach/reshape/cast is a dispatch a tiny model's forward pass would notice.
        """
        flat = raw if raw.ndim == 2 and not raw.requires_grad else raw.detach().reshape(len(raw), -1)
        if flat.shape[1] != output_dim:
            raise ShapeMismatchError(f"suspect {self.name} returns {flat.shape[1]} outputs per input, "
                                     f"the fingerprint expects {output_dim}")
        return flat if flat.dtype == torch.float32 else flat.to(torch.float32)

    def labels(self, x: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
        """Top-1 labels (what a label-only API returns); ``n_classes`` checks the output width."""
        raw = self.raw(x)
        if raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1 and n_classes != 1):
            out = raw.round().long().reshape(-1)
            width = int(out.max()) + 1 if len(out) else 0
        else:
            flat = raw if raw.ndim == 2 else raw.reshape(len(raw), -1)
            out, width = flat.argmax(1), flat.shape[1]
        if n_classes is not None and (width > n_classes or (raw.ndim == 2 and raw.shape[1] > 1
                                                             and width != n_classes)):
            raise ShapeMismatchError(f"suspect {self.name} returns {width} classes, the fingerprint expects "
                                     f"{n_classes}")
        return out


def _unwrap(model: Any, name: str, allow_pickle: bool, load_config: dict[str, Any] | None) -> tuple[Any, str]:
    """(callable, name) for a Suspect to re-wrap or a URI to load."""
    if isinstance(model, Suspect):
        model, name = model.model, name or model.name
    if isinstance(model, str):
        from .loading import load_model

        name = name or model
        # load_config reaches the loader plugins (e.g. the MLflow tracking URI of the registry being checked)
        extra = {k: v for k, v in (load_config or {}).items() if k != "allow_pickle"}
        model = load_model(model, allow_pickle=allow_pickle, **extra)
    return model, name


def _wider_than_probabilities(logp: np.ndarray) -> bool:
    """Whether the first row's log-softmax spans more than any row of probabilities could: then the raw outputs
    are logits and ``looks_like_probs`` would say False, known from three scalar reads instead of its passes.

    Why sound: log-softmax keeps the differences within a row (to float32 rounding), and a row that passes
    ``looks_like_probs`` (entries >= -1e-6, sum within 1e-3 of 1) spans at most ~1.0011 + m * 1e-6 < 1.5 + m * 1e-6.
    A NaN anywhere in the raw row makes the whole log-softmax row NaN, so the span compares False.
    """
    m = logp.shape[1] if logp.ndim == 2 else 0
    if not logp.size or m < 2:
        return False
    first = (logp.item(0), logp.item(1), logp.item(min(2, m - 1)))  # all in row 0
    return max(first) - min(first) > 1.5 + 1e-6 * m


def _label_only(raw: torch.Tensor, output_dim: int) -> bool:
    """A label-only API: one number per input although the task has several classes."""
    return raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1 and output_dim > 1)


def _one_hot(raw: torch.Tensor, output_dim: int) -> torch.Tensor:
    return canonicalize_labels(raw.round().clamp(0, output_dim - 1), output_dim)


def _training_modules(root: nn.Module) -> list[nn.Module]:
    """Submodules in training mode (a shared one may be listed twice: switching its mode twice is harmless).

    Why a list extended while iterated: a breadth-first walk with no pop() per node, ~4x cheaper than
    ``modules()``; cycles would break ``train()`` itself, so none are guarded against.
    """
    found, queue = [], [root]
    for module in queue:
        if module is not None:  # register_module(name, None)
            if module.training:
                found.append(module)
            if module._modules:  # leaves (most modules) have none
                queue.extend(module._modules.values())
    return found


def _set_mode(module: nn.Module, training: bool, recurse: bool = True) -> None:
    # Modules unpacked from torch.export programs refuse .eval()/.train(); they are frozen in export mode already.
    try:
        if recurse:
            module.train(training)
        else:
            module.training = training
    except NotImplementedError:
        pass


def match_rate(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Fraction of equal entries, bit-identical to ``float((got == expected).float().mean())``.

    Why numpy: the three tiny torch ops cost ~20 us of dispatch, more than a small model's forward pass; the
    float32 division reproduces torch's float32 mean exactly (integer sum, one correctly rounded division).
    """
    n = got.numel()
    if n != expected.numel() or n == 0:
        return float((got == expected).float().mean())  # torch's broadcasting rules / errors, unchanged
    hits = np.count_nonzero(got.numpy() == expected.numpy())
    return float(np.float32(hits) / np.float32(n))


def as_callable(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """Identity helper for type checkers: any numpy-in / array-out function is a valid suspect."""
    return fn
