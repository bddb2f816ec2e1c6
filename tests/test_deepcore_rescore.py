"""DeepCore's offline re-scoring benchmark: its bar, scores and threshold rules on hand-made zoos (no training)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "deepcore_rescore.py"


@pytest.fixture(scope="module")
def rs() -> Any:
    spec = importlib.util.spec_from_file_location("fp_deepcore_rescore", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bar_is_issue_7s_at_the_harness_threshold(rs: Any) -> None:
    cal_neg, cal_pos = [0.1, 0.2], [0.6, 0.8]  # choose_threshold centres tau in the gap: 0.4
    copies = [0.9] * 21
    assert rs.bar(cal_neg, cal_pos, [0.3], copies + [0.35]) == (True, False, False)  # one miss in 22 is allowed
    assert rs.bar(cal_neg, cal_pos, [0.3], copies[:-1] + [0.35, 0.35]) == (False, False, True)
    assert rs.bar(cal_neg, cal_pos, [0.45], copies + [0.9]) == (False, True, False)
    two_weak = copies[:-1] + [0.35, 0.45]
    assert rs.bar(cal_neg, cal_pos, [0.3], two_weak) == (True, False, False)  # tau 0.4: one miss
    assert rs.bar(cal_neg, cal_pos, [0.3], two_weak, skip=1) == (False, False, True)  # tau 0.5: two misses
    assert rs.oracle([0.3], copies + [0.35]) and not rs.oracle([0.5], copies[:-1] + [0.35, 0.45])


def test_scores_match_the_method_and_relative_scores_remove_shared_labels(rs: Any) -> None:
    own = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2)
    assert rs.kappa(own, own) == pytest.approx(1.0)
    looks = np.stack([own, own])  # look-alikes that answer like the owner everywhere
    rules = rs.score_rules(own, looks)
    assert rules["minus mean look-alike"](own) == pytest.approx(0.0)
    assert rules["minus look-alike majority"](own) == pytest.approx(0.0)
    assert set(rs.score_rules(own, np.zeros((0, len(own)), dtype=int))) == {"kappa"}  # no look-alikes stored


def _entry(owner: list[int], copy: list[int], other: list[int]) -> dict[str, Any]:
    rows = [{"split": split, "name": f"{split}-{kind}", "family": fam, "derived": derived, "labels": labels}
            for split in ("calibration", "test")
            for kind, fam, derived, labels in (("copy", "prune", True, copy), ("other", "homologous", False, other))]
    return {"owner": owner, "rows": rows, "lookalikes": [],
            "prunings": {"0.75": {"fidelity": 0.95, "labels": copy}, "0.95": {"fidelity": 0.2, "labels": other}}}


def test_zoo_outcomes_average_draws_and_add_owner_prunings_only_when_asked(rs: Any) -> None:
    owner = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    copy, other = owner[:9] + [0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    per_seed = {"deepcore": _entry(owner, copy, other), "deepcore@1": _entry(owner, copy, other)}
    out = rs.zoo_outcomes(per_seed, ((0.75, 0.95), 0.9), None)
    rows = {k[0] for k in out}
    assert rows == {"deepcore", "deepcore@1", "deepcore (mean of 2 draws)"}
    assert out[("deepcore", "kappa", "calibration")] == (True, False, False, True)
    # only the 0.75 pruning passes the fidelity filter, and the averaged row has no pruning rule
    assert ("deepcore", "kappa", "calibration + owner prunings (0.75, 0.95) (fidelity >= 0.9)") in out
    assert not any(k[0].endswith("draws)") and "prunings" in k[2] for k in out)


def test_extra_replicas_join_calibration_only_in_their_own_rows(rs: Any) -> None:
    owner = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    copy, other = owner[:9] + [0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    entry = _entry(owner, copy, other)
    assert not any("extra" in k[2] for k in rs.zoo_outcomes({"deepcore": entry}, None, None))  # none collected
    # an unseen look-alike lineage that agrees with the owner everywhere: as a calibration negative it lifts tau
    # above every copy, so the bar fails on misses in its rows only
    entry["rows"] += [{"split": "extra", "name": "extra-other", "family": "homologous", "derived": False,
                       "labels": owner}]
    out = rs.zoo_outcomes({"deepcore": entry}, None, None)
    assert out[("deepcore", "kappa", "calibration")] == (True, False, False, True)
    assert out[("deepcore", "kappa", "calibration + extra replicas' independents")] == (False, False, True, True)
