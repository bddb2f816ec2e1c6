"""Fusion of black-box scores with white-box statistics: the arithmetic, and the fused row of an evaluation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fp_registry.calibration import calibrate
from fp_registry.fusion import SD_FLOOR, WHITEBOX_GATE, fused_score, spread_units


def test_spread_units_on_the_raw_and_the_fisher_scale() -> None:
    null = [0.1, 0.2, 0.3]
    assert spread_units(null, 0.4) == pytest.approx((0.4 - 0.2) / 0.1)
    z = np.arctanh(null)
    assert spread_units(null, 0.9, fisher=True) == pytest.approx((np.arctanh(0.9) - z.mean()) / z.std(ddof=1))
    assert spread_units([0.0, 0.0, 0.0], 0.5) == pytest.approx(0.5 / SD_FLOOR)  # a tied null gets the floor
    assert spread_units([0.3], 0.5) is None and spread_units(null, math.nan) is None


def test_fused_score_is_black_box_unless_white_box_evidence_passes_the_gate() -> None:
    nulls = {"cka": [0.40, 0.45, 0.50], "weights": [0.08, 0.09, 0.10]}
    bb_null = [0.2, 0.4, 0.6]
    copy = {"cka": {"score": 0.49, "p_normal": 0.3}, "weights": {"score": 0.70, "p_normal": 1e-12}}
    w = spread_units(nulls["weights"], 0.70, fisher=True)
    assert w > 30 and fused_score(0.3, bb_null, copy, nulls) == pytest.approx(w - WHITEBOX_GATE)  # a pruned copy
    student = {"cka": {"score": 0.2, "p_normal": 0.99}, "weights": {"score": 0.0, "p_normal": 1.0}}
    assert fused_score(1.0, bb_null, student, nulls) == pytest.approx((1.0 - 0.4) / 0.2)  # the behaviour carries it
    # an independent one to two spreads above the white-box nulls does not outrank a student's black-box score
    wander = {"cka": {"score": 0.54, "p_normal": 0.05}, "weights": {"score": 0.105, "p_normal": 0.05}}
    assert 1 < spread_units(nulls["cka"], 0.54, fisher=True) < 2
    assert fused_score(0.7, bb_null, wander, nulls) == pytest.approx((0.7 - 0.4) / 0.2)
    no_null = {"cka": {"score": 0.99, "reason": "exported program"}, "weights": {"score": 0.0, "p_normal": 1.0}}
    assert fused_score(0.4, bb_null, no_null, nulls) == pytest.approx(0.0)  # CKA without a p-value is left out


def test_evaluate_adds_a_fused_row_calibrated_on_the_same_split(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from fp_registry.cli import run

    code = run(["evaluate", "-s", "digits-mlp", "-m", "ipguard:n_queries=20:steps=20", "--seed", "3", "--size", "3",
                "--whitebox", "-o", str(tmp_path), "-q", "--json"])
    assert code == 0
    plain, fused = json.loads(capsys.readouterr().out)["methods"]
    assert fused["method"] == "ipguard:n_queries=20:steps=20+whitebox" and fused["decision"] == "max"
    assert [r["name"] for r in fused["suspects"]] == [r["name"] for r in plain["suspects"]]
    for row in fused["suspects"]:
        assert row["is_match"] == (row["score"] >= fused["threshold"])
        assert row["seconds"] > next(r["seconds"] for r in plain["suspects"] if r["name"] == row["name"])
    kept = [r["score"] for r in fused["suspects"] if r["derived"] and r["family"] in ("finetune", "noise", "prune")]
    indep = [r["score"] for r in fused["suspects"] if not r["derived"]]
    assert kept and indep and min(kept) > max(indep)  # copies that keep the weights stand far above independents
    cal = fused["calibration"]  # the fused scores of the calibration split, which set the fused threshold
    assert calibrate(cal["negative_scores"], cal["positive_scores"]).threshold == pytest.approx(fused["threshold"])
    assert len(cal["negative_scores"]) == len(plain["calibration"]["negative_scores"])
    assert "+whitebox" in (tmp_path / "report.md").read_text()


def test_strata_rule_judges_each_stratum_by_its_own_evidence() -> None:
    """Pre-registration 9: W matches on the weights, S against its own threshold, O against the black box's."""
    from fp_registry.calibration import Calibration
    from fp_registry.fusion import fused_evidence, stratum

    nulls = {"cka": [0.40, 0.45, 0.50], "weights": [0.08, 0.09, 0.10]}
    pruned = {"cka": {"score": 0.49, "p_normal": 0.3}, "weights": {"score": 0.70, "p_normal": 1e-12}}
    same_arch = {"cka": {"score": 0.45, "p_normal": 0.5}, "weights": {"score": 0.09, "p_normal": 0.5}}
    other_arch = {"cka": {"score": 0.45, "p_normal": 0.5}}
    assert [stratum(w, nulls) for w in (pruned, same_arch, other_arch, {})] == ["W", "S", "O", "O"]
    fused = {"threshold": 10.0, "negative_scores": [0.0], "positive_scores": [20.0], "stratum_threshold": 0.8}
    bb = Calibration(0.5, [0.2, 0.4, 0.6], [0.9])

    def match(score: float, wb: dict, rule: str | None = "strata") -> bool:
        ref = {"nulls": nulls, "fused": {**fused, **({"rule": rule} if rule else {})}}
        return fused_evidence(ref, bb, score, wb)["match"]

    assert match(0.1, pruned)  # far below every black-box threshold: the weights decide
    assert not match(0.7, same_arch) and match(0.85, same_arch)  # a look-alike needs tau_S = 0.8, not 0.5
    assert match(0.55, other_arch) and not match(0.45, other_arch)  # another architecture: the black box's 0.5
    assert not match(0.85, same_arch, rule=None)  # the max rule: fused (0.85 - 0.4) / 0.2 = 2.25 < 10


def test_a_report_row_by_decision_takes_its_rates_from_each_verdict() -> None:
    from fp_registry.evaluation.harness import _result

    rows = [{"name": n, "family": f, "derived": d, "score": s, "is_match": m, "seconds": 0.0,
             "forward_seconds": 0.0, "n_queries": 1}
            for n, f, d, s, m in [("a", "prune", True, 0.1, True), ("b", "distill", True, 0.9, False),
                                  ("c", "homologous", False, 0.9, False), ("d", "other-arch", False, 0.6, True)]]
    by_score = _result("m", 0.5, 0.0, 0.0, rows)
    assert by_score["overall"]["tpr"] == 0.5 and by_score["same_arch_fpr"] == 1.0  # score >= 0.5
    decided = _result("m", 0.5, 0.0, 0.0, rows, by_decision=True)
    assert decided["overall"]["tpr"] == 0.5 and decided["overall"]["fir"] == 0.5 and decided["same_arch_fpr"] == 0.0
    assert decided["families"]["prune"]["tpr"] == 1.0 and decided["families"]["distill"]["mir"] == 1.0
    assert decided["families"]["other-arch"]["fir"] == 1.0 and decided["overall"]["roc_auc"] == by_score["overall"][
        "roc_auc"]  # ranking metrics still come from the scores


def test_deepcore_fingerprints_calibrate_the_strata_rule(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from fp_registry.cli import run

    code = run(["evaluate", "-s", "digits-mlp", "-m", "deepcore:n_points=30:n_candidates=300", "--seed", "3",
                "--size", "3", "--whitebox", "-o", str(tmp_path), "-q", "--json"])
    assert code == 0
    plain, fused = json.loads(capsys.readouterr().out)["methods"]
    assert fused["decision"] == "strata" and {r["stratum"] for r in fused["suspects"]} <= {"W", "S", "O"}
    bb = {r["name"]: r["score"] for r in plain["suspects"]}
    tau = {"W": -math.inf, "S": fused["stratum_threshold"], "O": plain["threshold"]}
    for row in fused["suspects"]:  # each verdict follows its stratum's rule on the black-box score
        assert row["is_match"] == (bb[row["name"]] >= tau[row["stratum"]])
    derived = [r for r in fused["suspects"] if r["derived"]]
    assert fused["overall"]["tpr"] == pytest.approx(sum(r["is_match"] for r in derived) / len(derived))
    kept = [r for r in derived if r["family"] in ("finetune", "noise", "prune")]
    assert kept and all(r["stratum"] == "W" for r in kept)  # copies that keep the weights match by them


def test_evaluate_builds_tail_lineages_only_for_the_fused_decision(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from fp_registry.cli import run

    base = "deepcore:n_points=30:n_candidates=300"
    reports = {}
    for key, spec, flags in (("tail", base + ":tail_lineages=3", ["--whitebox"]),
                             ("none", base + ":tail_lineages=0", ["--whitebox"]),
                             ("black-box", base + ":tail_lineages=3", [])):
        code = run(["evaluate", "-s", "digits-mlp", "-m", spec, "--seed", "3", "--size", "3", "-o",
                    str(tmp_path / key), "-q", "--json", *flags])
        assert code == 0
        reports[key] = json.loads(capsys.readouterr().out)
    assert reports["tail"]["tail_lineages"] == 3 and reports["black-box"]["tail_lineages"] == 0
    assert "3 homologous lineages" in (tmp_path / "tail" / "report.md").read_text()
    (plain, fused), (plain0, fused0) = reports["tail"]["methods"], reports["none"]["methods"]
    assert plain["threshold"] == plain0["threshold"] and fused["threshold"] == fused0["threshold"]
    assert 0 <= fused["stratum_tail"] <= 3 and fused0["stratum_tail"] == 0
    assert fused["stratum_threshold"] >= fused0["stratum_threshold"]  # more look-alikes can only raise it
