"""Thresholds and p-values calibrated on held-out independent (and derived) models."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Calibration:
    """Scores of the calibration zoo and the threshold chosen from them."""

    threshold: float
    negative_scores: list[float] = field(default_factory=list)
    positive_scores: list[float] = field(default_factory=list)
    target_fpr: float = 0.01

    def p_value(self, score: float) -> float | None:
        """Empirical p-value: chance that an independent model scores at least ``score``.

        ``(1 + #{neg >= score}) / (1 + n)``; the smallest reachable value is ``1 / (1 + n)``.
        """
        if not self.negative_scores or not math.isfinite(score):
            return None
        ordered = self._sorted_negatives
        hits = len(ordered) - bisect.bisect_left(ordered, score)  # #{neg >= score} in O(log n)
        return (1 + hits) / (1 + len(self.negative_scores))

    @cached_property
    def _sorted_negatives(self) -> list[float]:
        # cached_property writes the instance __dict__ directly, so it works on this frozen dataclass
        return sorted(s for s in self.negative_scores if not math.isnan(s))  # NaN is never >= a score

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "negative_scores": self.negative_scores,
                "positive_scores": self.positive_scores, "target_fpr": self.target_fpr}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Calibration | None":
        return None if not d else cls(**d)


def choose_threshold(negatives: list[float], positives: list[float], target_fpr: float = 0.01,
                     default: float = 0.5, skip_positives: int = 0) -> float:
    """Lowest threshold whose FPR on the negatives is at most ``target_fpr``, centred in the gap to the positives.

    Why the gap: a threshold right on the largest negative score leaves no margin for unseen independent
    models; halfway to the next positive score trades evenly between robustness and uniqueness.
    ``skip_positives`` centres it on the gap to the ``skip_positives + 1``-th lowest positive instead: a method
    whose target tolerates missing a few copies spends that tolerance on margin against unseen independents.
    """
    if not negatives:
        return default
    neg = sorted(negatives, reverse=True)
    allowed = int(math.floor(target_fpr * len(neg)))
    floor_score = neg[allowed] if allowed < len(neg) else -math.inf
    above = sorted(p for p in positives if p > floor_score)
    if above and math.isfinite(floor_score):
        return (floor_score + above[min(skip_positives, len(above) - 1)]) / 2
    if not math.isfinite(floor_score):
        return min(positives) if positives else default
    return math.nextafter(floor_score, math.inf)


def calibrate(negatives: list[float], positives: list[float], target_fpr: float = 0.01,
              default: float = 0.5, skip_positives: int = 0) -> Calibration:
    return Calibration(choose_threshold(negatives, positives, target_fpr, default, skip_positives),
                       [float(s) for s in negatives], [float(s) for s in positives], target_fpr)
