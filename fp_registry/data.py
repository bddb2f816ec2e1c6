"""Datasets bundled with scikit-learn, split once into the owner's part and a disjoint "other" part."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UsageError

DATASETS = ("digits", "diabetes", "breast_cancer", "wine", "synthtext", "synthlm")


@dataclass(frozen=True)
class Dataset:
    """Features scaled to a known domain, with the owner / other split fixed by a seed-independent permutation."""

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    domain: tuple[float, float] | None
    owner_idx: torch.Tensor
    other_idx: torch.Tensor

    @property
    def owner(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x[self.owner_idx], None if self.y is None else self.y[self.owner_idx]

    @property
    def other(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x[self.other_idx], None if self.y is None else self.y[self.other_idx]


def load_dataset(name: str, owner_fraction: float = 0.7) -> Dataset:
    """Load a bundled dataset (no download: the data ships inside the scikit-learn wheel)."""
    x, y, domain = _load_arrays(name)
    perm = torch.from_numpy(np.random.default_rng(12345).permutation(len(x)))
    cut = int(owner_fraction * len(x))
    return Dataset(name, torch.from_numpy(x), None if y is None else torch.from_numpy(y), domain,
                   perm[:cut], perm[cut:])


def _load_arrays(name: str) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float] | None]:
    try:
        import sklearn.datasets as skd
    except ImportError as exc:  # pragma: no cover - scikit-learn is a core dependency
        raise UsageError("scikit-learn is needed for the bundled datasets", "pip install scikit-learn") from exc
    if name == "digits":
        d = skd.load_digits()
        return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), (0.0, 1.0)
    if name == "diabetes":
        d = skd.load_diabetes()
        x = d.data.astype(np.float32)
        x = (x - x.mean(0)) / x.std(0)
        y = ((d.target - d.target.mean()) / d.target.std()).astype(np.float32)[:, None]
        return x, y, (float(x.min()), float(x.max()))
    if name == "synthtext":  # token ids generated locally (fp_registry.text), never downloaded
        from .text import synthetic_text

        return synthetic_text()
    if name == "synthlm":  # next-token rows of a locally generated language (fp_registry.textlm), never downloaded
        from .textlm import synthetic_lm

        return synthetic_lm()
    if name in ("breast_cancer", "wine"):
        d = getattr(skd, f"load_{name}")()
        x = d.data.astype(np.float32)
        x = (x - x.mean(0)) / x.std(0)
        return x, d.target.astype(np.int64), (float(x.min()), float(x.max()))
    raise UsageError(f"unknown dataset {name!r}", f"use one of {', '.join(DATASETS)} or an .npz file with X and y")


def load_data_arg(value: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Resolve the CLI's ``--data``: a bundled dataset name (owner part) or an ``.npz`` with ``X`` and ``y``."""
    path = Path(value)
    if path.suffix == ".npz":
        if not path.exists():
            raise UsageError(f"data file {value} does not exist", "pass a bundled dataset name or an existing .npz")
        try:
            with np.load(path, allow_pickle=False) as f:  # object arrays would unpickle: refused
                if "X" not in f:
                    raise UsageError(f"{value} has no array named X", "save it with np.savez(path, X=..., y=...)")
                return _features(f["X"]), f["y"] if "y" in f else None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise UsageError(f"{value} is not a readable .npz of numeric arrays ({type(exc).__name__})",
                             "save it with np.savez(path, X=..., y=...)") from None
    ds = load_dataset(value)
    x, y = ds.owner
    return x.numpy(), None if y is None else y.numpy()


def _features(x: np.ndarray) -> np.ndarray:
    """Token ids stay int64 (text owners are queried with ids, never floats); anything else becomes float32."""
    return x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
