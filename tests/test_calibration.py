"""Threshold choice: centred in the gap to the positives, optionally past the few weakest ones."""
from __future__ import annotations

import pytest

from fp_registry.calibration import calibrate, choose_threshold


def test_threshold_centres_on_the_gap_to_the_weakest_positive() -> None:
    assert choose_threshold([0.1, 0.2], [0.3, 0.7, 0.9]) == pytest.approx(0.25)


def test_skip_positives_centres_on_the_next_one_and_stays_above_the_negatives() -> None:
    neg, pos = [0.1, 0.2], [0.3, 0.7, 0.9]
    assert choose_threshold(neg, pos, skip_positives=1) == pytest.approx(0.45)
    assert choose_threshold(neg, pos, skip_positives=5) == pytest.approx(0.55)  # beyond the list: the highest
    assert choose_threshold(neg, [0.15, 0.6], skip_positives=1) == pytest.approx(0.4)  # 0.15 is no gap
    assert calibrate(neg, pos, skip_positives=1).threshold == pytest.approx(0.45)
