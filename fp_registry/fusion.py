"""One score from all the evidence: the black-box score fused with white-box statistics, calibrated like any score.

Each statistic is put in units of its own null's spread (how far above the calibration independents it lies).
The fused score is the black-box one, unless a white-box statistic lies more than ``WHITEBOX_GATE`` spreads
beyond its null: then that excess, if larger. Why: the statistics fail on different attacks (a heavily pruned copy
loses its black-box behaviour but keeps the owner's weights; an extracted student has the behaviour and none of
the weights), so one strong piece of evidence must be enough; but an independent's white-box statistics wander
about one spread from the null's mean, which is as much as a student's black-box score lies above the
independents' (``benchmarks/results/text.md``, "Fused evidence"). The gate keeps that wandering from reordering the
black-box ranking.
The fused score gets its own threshold from the calibration split, like any other score.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .calibration import Calibration, calibrate

SD_FLOOR = 1e-3  # a null whose members all tie (e.g. every kappa clipped at 0) must not turn noise into evidence
STATISTICS = ("cka", "weights")  # white-box statistics, correlations: compared after Fisher's z (atanh)
# spreads. Set when independents stayed within 1.35 of their null on text-gpt 0-2, but under the null that d8ace57
# corrected (placeholders widened it); with the corrected null one independent reached 5.1
# (benchmarks/results/deepcore.md, "Stop 24")
WHITEBOX_GATE = 5.0


def spread_units(null: Sequence[float], score: float, fisher: bool = False) -> float | None:
    """``(score - mean(null)) / sd(null)``, on the Fisher-z scale for correlations; None without two null scores."""
    values = np.asarray([v for v in null if math.isfinite(v)], dtype=float)
    if len(values) < 2 or not math.isfinite(score):
        return None
    if fisher:  # correlations: their spread shrinks near 1, so compare them on Fisher's z scale
        values, score = _fisher(values), float(_fisher(np.asarray(score)))
    return (float(score) - float(values.mean())) / max(float(values.std(ddof=1)), SD_FLOOR)


def _fisher(r: np.ndarray) -> np.ndarray:
    return np.arctanh(np.clip(r, -0.999999, 0.999999))


def whitebox_units(wb: dict[str, Any], wb_nulls: dict[str, Any]) -> dict[str, float]:
    """Each white-box statistic of ``wb`` (the output of :func:`whitebox.check`) in its null's spread units."""
    units = {}
    for key in STATISTICS:
        ev, null = wb.get(key) or {}, wb_nulls.get(key)
        if null and "score" in ev and "p_normal" in ev:  # no p-value: the statistic is not the null's (see check)
            t = spread_units(null, float(ev["score"]), fisher=True)
            if t is not None:
                units[key] = t
    return units


def fused_score(bb_score: float, bb_null: Sequence[float], wb: dict[str, Any], wb_nulls: dict[str, Any]) -> float:
    """The black-box score in null-spread units, or a white-box statistic's excess over the gate if larger
    (``wb``: the output of :func:`whitebox.check`)."""
    units = [spread_units(bb_null, bb_score)] + [t - WHITEBOX_GATE for t in whitebox_units(wb, wb_nulls).values()]
    found = [u for u in units if u is not None]
    return max(found) if found else float("nan")


def stratum(wb: dict[str, Any], wb_nulls: dict[str, Any]) -> str:
    """``"W"``: a white-box statistic past the gate; ``"S"``: the weights compare (the owner's architecture) but say
    nothing; ``"O"``: no weight statistic (another architecture, or no weights)."""
    units = whitebox_units(wb, wb_nulls)
    if any(t >= WHITEBOX_GATE for t in units.values()):
        return "W"
    return "S" if "weights" in units else "O"


def calibrate_fused(ref: dict[str, Any], calibration: Calibration, owner: Any, negatives: list[Any],
                    positives: list[Any], target_fpr: float = 0.01, rule: str = "max",
                    tail: Sequence[tuple[Any, float]] = ()) -> dict[str, Any]:
    """Fused scores of the calibration models (in the order their black-box scores were taken) and a threshold.

    ``rule="strata"`` also calibrates the black-box threshold of stratum S on that stratum's calibration models
    (see :func:`fused_evidence`), plus the ``tail``: (model, black-box score) pairs of extra homologous lineages,
    those of them that fall in stratum S. Why only there: about one homologous lineage in 75 agrees with the owner
    far above the rest (benchmarks/results/deepcore.md, "Stop 29"), which a split's four lineages rarely show; the
    other thresholds judge students of other architectures, which extra negatives would only push out.
    """
    from .whitebox import check

    bb_null = calibration.negative_scores
    wb = {"neg": [check(ref, owner, m) for m in negatives], "pos": [check(ref, owner, m) for m in positives]}
    bb = {"neg": calibration.negative_scores, "pos": calibration.positive_scores}
    fused = {side: [fused_score(s, bb_null, w, ref["nulls"]) for s, w in zip(bb[side], wb[side])] for side in bb}
    cal = calibrate(fused["neg"], fused["pos"], target_fpr)
    out: dict[str, Any] = {"threshold": cal.threshold, "negative_scores": cal.negative_scores,
                           "positive_scores": cal.positive_scores}
    if rule == "strata":
        in_s = {side: [s for s, w in zip(bb[side], wb[side]) if stratum(w, ref["nulls"]) == "S"] for side in bb}
        extra = [s for m, s in tail if stratum(check(ref, owner, m), ref["nulls"]) == "S"]
        neg_s = in_s["neg"] + extra
        out |= {"rule": "strata", "stratum_threshold": calibrate(neg_s, in_s["pos"], target_fpr).threshold,
                "stratum_negative_scores": neg_s, "stratum_positive_scores": in_s["pos"], "stratum_tail": len(extra)}
    return out


def fused_evidence(ref: dict[str, Any], calibration: Calibration | None, bb_score: float,
                   wb: dict[str, Any]) -> dict[str, Any] | None:
    """Fused score, its threshold, empirical p-value and decision, or None without a fused calibration.

    The decision is ``score >= threshold``, or under ``rule="strata"`` (DeepCore; pre-registration 9, see
    benchmarks/results/deepcore.md, "Stop 26"): stratum W matches; stratum S matches when the black-box score
    reaches the threshold calibrated on stratum S alone; stratum O when it reaches the black-box threshold.
    Why: the look-alikes the black box scores high are retrains of the owner's architecture, and the copies of that
    architecture that keep no weight (students) score far above the weakest copies overall, which the weights or
    the plain threshold judge.
    """
    fused = ref.get("fused")
    if not fused or calibration is None:
        return None
    score = fused_score(bb_score, calibration.negative_scores, wb, ref.get("nulls", {}))
    cal = Calibration(float(fused["threshold"]), list(fused["negative_scores"]), list(fused["positive_scores"]))
    out = {"score": score, "threshold": cal.threshold, "p_empirical": cal.p_value(score),
           "match": bool(score >= cal.threshold)}
    if fused.get("rule") == "strata":
        where = stratum(wb, ref.get("nulls", {}))
        tau = {"S": float(fused["stratum_threshold"]), "O": calibration.threshold}.get(where)  # W: weights decide
        out |= {"stratum": where, "match": bool(tau is None or bb_score >= tau)}
    return out
