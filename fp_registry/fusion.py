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


def fused_score(bb_score: float, bb_null: Sequence[float], wb: dict[str, Any], wb_nulls: dict[str, Any]) -> float:
    """The black-box score in null-spread units, or a white-box statistic's excess over the gate if larger
    (``wb``: the output of :func:`whitebox.check`)."""
    units = [spread_units(bb_null, bb_score)]
    for key in STATISTICS:
        ev, null = wb.get(key) or {}, wb_nulls.get(key)
        if null and "score" in ev and "p_normal" in ev:  # no p-value: the statistic is not the null's (see check)
            t = spread_units(null, float(ev["score"]), fisher=True)
            units.append(None if t is None else t - WHITEBOX_GATE)
    found = [u for u in units if u is not None]
    return max(found) if found else float("nan")


def calibrate_fused(ref: dict[str, Any], calibration: Calibration, owner: Any, negatives: list[Any],
                    positives: list[Any], target_fpr: float = 0.01) -> dict[str, Any]:
    """Fused scores of the calibration models (in the order their black-box scores were taken) and a threshold."""
    from .whitebox import check

    bb_null = calibration.negative_scores

    def scores(models: list[Any], bb: list[float]) -> list[float]:
        return [fused_score(s, bb_null, check(ref, owner, m), ref["nulls"]) for m, s in zip(models, bb)]

    cal = calibrate(scores(negatives, calibration.negative_scores), scores(positives, calibration.positive_scores),
                    target_fpr)
    return {"threshold": cal.threshold, "negative_scores": cal.negative_scores,
            "positive_scores": cal.positive_scores}


def fused_evidence(ref: dict[str, Any], calibration: Calibration | None, bb_score: float,
                   wb: dict[str, Any]) -> dict[str, Any] | None:
    """Fused score, its threshold, empirical p-value and decision, or None without a fused calibration."""
    fused = ref.get("fused")
    if not fused or calibration is None:
        return None
    score = fused_score(bb_score, calibration.negative_scores, wb, ref.get("nulls", {}))
    cal = Calibration(float(fused["threshold"]), list(fused["negative_scores"]), list(fused["positive_scores"]))
    return {"score": score, "threshold": cal.threshold, "p_empirical": cal.p_value(score),
            "match": bool(score >= cal.threshold)}
