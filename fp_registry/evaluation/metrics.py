"""Detection metrics of methods.md §7.4, computed exactly from the scores (no threshold grids)."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

NAN = float("nan")


def robustness(pos: list[float], tau: float) -> float:
    """R(tau): share of derived suspects scoring >= tau (= TPR)."""
    return sum(s >= tau for s in pos) / len(pos) if pos else NAN


def uniqueness(neg: list[float], tau: float) -> float:
    """U(tau): share of independent suspects scoring < tau (= TNR)."""
    return sum(s < tau for s in neg) / len(neg) if neg else NAN


def aruc(pos: list[float], neg: list[float]) -> float:
    """Exact integral over tau in [0, 1] of min(R(tau), U(tau)); R and U are step functions of the scores."""
    if not pos or not neg:
        return NAN
    cuts = sorted({0.0, 1.0, *(min(1.0, max(0.0, s)) for s in [*pos, *neg])})
    area = 0.0
    for a, b in zip(cuts, cuts[1:]):
        mid = (a + b) / 2  # R and U are constant on the open interval (a, b)
        area += (b - a) * min(robustness(pos, mid), uniqueness(neg, mid))
    return area


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """Mann-Whitney: P(s+ > s-) + 1/2 P(s+ = s-)."""
    if not pos or not neg:
        return NAN
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def tpr_at_fpr(pos: list[float], neg: list[float], max_fpr: float = 0.01) -> float:
    """Largest TPR over thresholds whose FPR (share of negatives >= tau) is at most ``max_fpr``."""
    if not pos or not neg:
        return NAN
    best = 0.0
    for tau in sorted({*pos, *neg, math.inf}):
        if sum(n >= tau for n in neg) / len(neg) <= max_fpr:
            best = max(best, robustness(pos, tau))
    return best


def at_threshold(pos: list[float], neg: list[float], tau: float) -> dict[str, float]:
    """TPR, TNR, MIR (= 1 - TPR) and FIR (= 1 - TNR) at the method's own decision rule ``s >= tau``."""
    tpr, tnr = robustness(pos, tau), uniqueness(neg, tau)
    return {"tpr": tpr, "tnr": tnr, "mir": 1 - tpr, "fir": 1 - tnr}


def summary(pos: list[float], neg: list[float], tau: float) -> dict[str, float]:
    """All threshold-free and at-threshold metrics of one set of scores."""
    return {"aruc": aruc(pos, neg), "roc_auc": roc_auc(pos, neg), "tpr_at_1fpr": tpr_at_fpr(pos, neg, 0.01),
            **at_threshold(pos, neg, tau), "n_pos": len(pos), "n_neg": len(neg)}


def per_family(rows: Iterable[dict[str, Any]], tau: float) -> dict[str, dict[str, float]]:
    """Each derived family vs all negatives (ROC-AUC, TPR, MIR); each independent family's FPR (FIR)."""
    rows = list(rows)
    fams: dict[tuple[bool, str], list[float]] = defaultdict(list)
    for r in rows:
        fams[(r["derived"], r["family"])].append(r["score"])
    pos_all = [r["score"] for r in rows if r["derived"]]
    neg_all = [r["score"] for r in rows if not r["derived"]]
    out: dict[str, dict[str, float]] = {}
    for (derived, fam), scores in sorted(fams.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        if derived:
            out[fam] = {"derived": True, "n": len(scores), "roc_auc": roc_auc(scores, neg_all),
                        "tpr": robustness(scores, tau), "mir": 1 - robustness(scores, tau)}
        else:
            out[fam] = {"derived": False, "n": len(scores), "roc_auc": roc_auc(pos_all, scores),
                        "tnr": uniqueness(scores, tau), "fir": 1 - uniqueness(scores, tau)}
    return out


def at_decisions(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``"overall"`` and each family's TPR / MIR or TNR / FIR from every row's own decision (``is_match``): for a
    decision rule that is not one threshold on the score (the fused ``strata`` rule)."""
    rows = list(rows)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["family"]].append(r)
    out = {"overall": {**_rates([r for r in rows if r["derived"]], True),
                       **_rates([r for r in rows if not r["derived"]], False)}}
    for fam, members in groups.items():
        out[fam] = _rates(members, members[0]["derived"])
    return out


def _rates(rows: list[dict[str, Any]], derived: bool) -> dict[str, float]:
    share = sum(bool(r["is_match"]) for r in rows) / len(rows) if rows else NAN
    return {"tpr": share, "mir": 1 - share} if derived else {"tnr": 1 - share, "fir": share}


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
