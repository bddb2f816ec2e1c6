"""PNG plots of one method's test scores: robustness/uniqueness curves and score histograms per family."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .report import file_stem  # noqa: E402


def _curves(pos: np.ndarray, neg: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = (pos[None, :] >= grid[:, None]).mean(1) if len(pos) else np.full(len(grid), np.nan)
    u = (neg[None, :] < grid[:, None]).mean(1) if len(neg) else np.full(len(grid), np.nan)
    return r, u


def plot_curves(result: dict[str, Any], title: str, path: Path) -> Path:
    """R(τ), U(τ) and min(R, U) (whose area is ARUC) with the calibrated threshold marked."""
    rows = result["suspects"]
    pos = np.array([r["score"] for r in rows if r["derived"]], dtype=float)
    neg = np.array([r["score"] for r in rows if not r["derived"]], dtype=float)
    grid = np.linspace(0, 1, 1001)
    r, u = _curves(pos, neg, grid)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(grid, r, label=f"robustness R(τ) ({len(pos)} derived)", color="tab:red", lw=2)
    ax.plot(grid, u, label=f"uniqueness U(τ) ({len(neg)} independent)", color="tab:blue", lw=2)
    ax.fill_between(grid, 0, np.minimum(r, u), color="tab:purple", alpha=0.2,
                    label=f"min(R, U): ARUC = {result['overall']['aruc']:.3f}")
    ax.axvline(result["threshold"], color="black", ls="--", lw=1, label=f"calibrated τ = {result['threshold']:.3f}")
    ax.set(xlabel="threshold τ on the score", ylabel="fraction of test suspects", xlim=(0, 1), ylim=(-0.02, 1.02),
           title=f"{title}: {result['method']} robustness / uniqueness")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_hist(result: dict[str, Any], title: str, path: Path) -> Path:
    """One strip per family: each suspect's score as a dot, derived in red, independent in blue."""
    rows = result["suspects"]
    fams = sorted({(not r["derived"], r["family"]) for r in rows})
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(fams) + 1.6), dpi=110)
    rng = np.random.default_rng(0)
    for i, (indep, fam) in enumerate(fams):
        s = np.array([r["score"] for r in rows if r["family"] == fam and r["derived"] != indep], dtype=float)
        ax.scatter(s, i + rng.uniform(-0.15, 0.15, len(s)), s=22, alpha=0.75,
                   color="tab:blue" if indep else "tab:red", edgecolor="none")
    ax.axvline(result["threshold"], color="black", ls="--", lw=1, label=f"calibrated τ = {result['threshold']:.3f}")
    ax.set_yticks(range(len(fams)), [f"{f} ({'independent' if ind else 'derived'})" for ind, f in fams], fontsize=8)
    ax.scatter([], [], color="tab:red", label="derived (positive)")
    ax.scatter([], [], color="tab:blue", label="independent (negative)")
    ax.set(xlabel="score (higher = judged derived)", xlim=(-0.02, 1.02),
           title=f"{title}: {result['method']} scores per family (test split)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.45 * len(fams) + 1.6)), ncol=3, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_method(result: dict[str, Any], title: str, out_dir: Path) -> list[Path]:
    stem = file_stem(result["method"])
    return [plot_curves(result, title, out_dir / f"{stem}_curves.png"),
            plot_hist(result, title, out_dir / f"{stem}_hist.png")]
