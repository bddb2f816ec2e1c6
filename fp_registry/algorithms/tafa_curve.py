"""ARUC / ROC-AUC of TAFA versus the pair distance d: on a small held-out set, or on the zoo's non-test splits."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

CAL_SEEDS = (1, 2, 3, 4)  #: independent owners used only to calibrate the threshold
TEST_SEEDS = tuple(range(10, 18))  #: independent owners used only for measuring


def _noised(model: nn.Module, scale: float, seed: int) -> nn.Module:
    out, gen = copy.deepcopy(model), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=gen))
    return out


def _pruned(model: nn.Module, fraction: float) -> nn.Module:
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            if p.ndim > 1:  # magnitude pruning of weight matrices, biases kept
                p.mul_((p.abs() > p.abs().flatten().quantile(fraction)).float())
    return out


def _finetuned(name: str, model: nn.Module, epochs: int, seed: int, lr: float = 1e-3) -> nn.Module:
    from fp_registry.scenarios import get_scenario
    from fp_registry.training import fit

    sc = get_scenario(name)
    x, y = sc.load_data().owner
    out = copy.deepcopy(model)
    if sc.task == "generation":
        return fit(out, sc.task, None, x, epochs=epochs, lr=lr, seed=seed, latent_dim=sc.latent_dim)
    return fit(out, sc.task, x, y, epochs=epochs, lr=lr, seed=seed)


def heldout(name: str) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Derived copies of seed-0 owner (fine-tune, prune, noise, fine-tune+prune) and other-seed owners."""
    from fp_registry.scenarios import train_owner

    owner = train_owner(name, 0)
    pos = [(f"finetune{e}ep", _finetuned(name, owner, e, 100 + e)) for e in (1, 3, 5)]
    pos += [(f"prune{int(f * 100)}", _pruned(owner, f)) for f in (0.1, 0.2, 0.3)]
    pos += [(f"noise{s}", _noised(owner, s, 7)) for s in (0.005, 0.01, 0.02)]
    pos.append(("finetune3+prune20", _pruned(_finetuned(name, owner, 3, 200), 0.2)))
    neg = [(f"indep-seed{s}", train_owner(name, s)) for s in TEST_SEEDS]
    return pos, neg


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins / (len(pos) * len(neg)))


def aruc(pos: list[float], neg: list[float], k: int = 1000) -> float:
    """∫ min(R(τ), U(τ)) dτ over τ in [0, 1] (methods.md §8): R = TPR at τ, U = TNR at τ."""
    total = 0.0
    for i in range(1, k + 1):
        tau = i / k
        r = sum(p >= tau for p in pos) / len(pos)
        u = sum(n < tau for n in neg) / len(neg)
        total += min(r, u)
    return total / k


def _row(name: str, d: float, fp: Any, ps: list[float], ns: list[float]) -> dict[str, Any]:
    tau = fp.threshold
    return {"scenario": name, "d": d, "n_pairs": fp.info["n_pairs"], "roc_auc": roc_auc(ps, ns),
            "aruc": aruc(ps, ns), "threshold": tau, "tpr": sum(p >= tau for p in ps) / len(ps),
            "tnr": sum(n < tau for n in ns) / len(ns), "pos": ps, "neg": ns}


def sweep(name: str, ds: list[float], seed: int = 0) -> list[dict[str, Any]]:
    """Fingerprint the seed-0 owner at each d, calibrate on CAL_SEEDS owners, score the held-out set."""
    import fp_registry as fpr
    from fp_registry.scenarios import owner_inputs, train_owner

    owner, kw = train_owner(name, 0), owner_inputs(name)
    cal = [train_owner(name, s) for s in CAL_SEEDS]
    pos, neg = heldout(name)
    rows = []
    for d in ds:
        fp = fpr.fingerprint(owner, method="tafa", negatives=cal, seed=seed, progress=False, d=d, **kw)
        rows.append(_row(name, d, fp, [fp.verify(m).score for _, m in pos], [fp.verify(m).score for _, m in neg]))
    return rows


def zoo_sweep(name: str, ds: list[float], seed: int = 0) -> list[dict[str, Any]]:
    """The shared zoo's train + calibration splits (the ones `fpreg evaluate` builds; never its test split).

    This is the curve the default d is chosen from, so choosing d never looks at a test-split model. τ, TPR
    and TNR are in-sample here (τ calibrated on the same negatives); only ROC-AUC and ARUC are meant to be read.
    """
    import fp_registry as fpr
    from fp_registry.methods import make_owner
    from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
    from fp_registry.zoo.builder import build_zoo

    model, kw = train_owner(name, seed), owner_inputs(name)
    owner = make_owner(model, kw["task"], kw.get("data"), kw.get("labels"), kw.get("input_shape"))
    zoo = build_zoo(owner, seed=seed, progress=False, name=name, alt_data=get_scenario(name).load_data().other)
    pos = [z.model for s in ("train", "calibration") for z in zoo.split(s).positives]
    neg = [z.model for s in ("train", "calibration") for z in zoo.split(s).negatives]
    rows = []
    for d in ds:
        fp = fpr.fingerprint(model, method="tafa", negatives=neg, seed=seed, progress=False, d=d, **kw)
        rows.append(_row(name, d, fp, [fp.verify(m).score for m in pos], [fp.verify(m).score for m in neg]))
    return rows


def plot(rows: list[dict[str, Any]], path: str | Path) -> None:
    """ARUC and ROC-AUC against d, one line per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for sc in sorted({r["scenario"] for r in rows}):
        mine = [r for r in rows if r["scenario"] == sc]
        ax.plot([r["d"] for r in mine], [r["aruc"] for r in mine], "o-", label=f"{sc} ARUC")
        ax.plot([r["d"] for r in mine], [r["roc_auc"] for r in mine], "x--", label=f"{sc} ROC-AUC")
    ax.set_xscale("log")
    ax.set_xlabel("pair distance d (relative to mean anchor norm)")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(scenarios: list[str], ds: list[float], out: str | Path, zoo: bool = False) -> list[dict[str, Any]]:
    """Run the sweep (``zoo``: on the zoo's train + calibration splits), write ``<out>.png`` / ``.json``."""
    torch.set_num_threads(1)
    run = zoo_sweep if zoo else sweep
    rows = [r for sc in scenarios for r in run(sc, ds)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return rows
