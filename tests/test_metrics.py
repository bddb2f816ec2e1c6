"""Metrics against hand-computed values, and the report writer on a synthetic result."""
from __future__ import annotations

import json
import math

import pytest

from fp_registry.evaluation import metrics
from fp_registry.evaluation.harness import _result
from fp_registry.evaluation.report import write_report


def test_constant_scores_match_methods_md_example() -> None:
    pos, neg = [0.6] * 5, [0.4] * 7
    assert metrics.roc_auc(pos, neg) == 1.0
    assert metrics.aruc(pos, neg) == pytest.approx(0.2)


def test_hand_computed_small_example() -> None:
    pos, neg = [0.9, 0.5], [0.5, 0.1]
    # pairs: 0.9>0.5, 0.9>0.1, 0.5=0.5 (half), 0.5>0.1 -> 3.5 / 4
    assert metrics.roc_auc(pos, neg) == pytest.approx(0.875)
    # (0.1, 0.5): R=1, U=0.5 -> 0.2 ; (0.5, 0.9): R=0.5, U=1 -> 0.2 ; elsewhere min is 0
    assert metrics.aruc(pos, neg) == pytest.approx(0.4)
    # zero negatives may reach tau, so tau > 0.5: only 0.9 is caught
    assert metrics.tpr_at_fpr(pos, neg, 0.01) == pytest.approx(0.5)
    assert metrics.at_threshold(pos, neg, 0.5) == {"tpr": 1.0, "tnr": 0.5, "mir": 0.0, "fir": 0.5}


def test_perfect_and_inverted_separation() -> None:
    assert metrics.aruc([1.0, 1.0], [0.0, 0.0]) == pytest.approx(1.0)
    assert metrics.roc_auc([0.1], [0.9]) == 0.0
    assert metrics.aruc([0.1], [0.9]) == pytest.approx(0.0)
    assert metrics.tpr_at_fpr([0.1], [0.9]) == 0.0


def test_tpr_at_fpr_allows_one_percent_of_many_negatives() -> None:
    # 203 negatives: 3 high ones give FPR 3/203 > 1 % for tau <= 0.95; tau = 0.96 leaves 2/203 <= 1 %
    neg = [i / 1000 for i in range(200)] + [0.95, 0.97, 0.98]
    pos = [0.96, 0.99, 0.5]
    assert metrics.tpr_at_fpr(pos, neg, 0.01) == pytest.approx(2 / 3)


def test_empty_sides_are_nan_and_cleaned_to_none() -> None:
    assert math.isnan(metrics.aruc([], [0.1]))
    assert math.isnan(metrics.roc_auc([0.2], []))
    assert metrics.clean({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}


def _rows() -> list[dict]:
    spec = [("finetune", True, 0.9), ("finetune", True, 0.7), ("prune", True, 0.3),
            ("homologous", False, 0.2), ("homologous", False, 0.8), ("other-arch", False, 0.1)]
    return [{"name": f"m{i}", "family": f, "derived": d, "score": s, "is_match": s >= 0.5, "n_queries": 10,
             "seconds": 0.01, "forward_seconds": 0.005, "utility": {"accuracy": 0.9}}
            for i, (f, d, s) in enumerate(spec)]


def test_per_family_values() -> None:
    fam = metrics.per_family(_rows(), 0.5)
    assert fam["finetune"]["tpr"] == 1.0 and fam["prune"]["mir"] == 1.0
    assert fam["homologous"]["fir"] == 0.5 and fam["other-arch"]["tnr"] == 1.0
    # prune (0.3) vs negatives 0.2, 0.8, 0.1 -> wins 2 of 3
    assert fam["prune"]["roc_auc"] == pytest.approx(2 / 3)


def test_report_files_are_written(tmp_path) -> None:
    result = _result("demo", 0.5, 1.0, 100.0, _rows())
    assert result["same_arch_fpr"] == 0.5  # one of the two homologous negatives crosses tau
    assert result["verify_forward_ratio"] == pytest.approx(2.0)
    report = {"scenario": "toy", "task": "classification", "seed": 0, "zoo_seconds": 1.0,
              "zoo": {"test": {"positives": 3, "negatives": 3}}, "holdout_families": [], "methods": [result]}
    paths = write_report(report, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["methods"][0]["overall"]["n_pos"] == 3
    assert "| demo |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "demo_curves.png").stat().st_size > 1000 and len(paths) == 4


def test_method_spec_variants_parse_and_name_files() -> None:
    from fp_registry.errors import UsageError
    from fp_registry.evaluation.harness import parse_method_spec
    from fp_registry.evaluation.report import file_stem

    assert parse_method_spec("metav") == ("metav", {})
    assert parse_method_spec("textprobe:confer=200:gamma=0.9:seeds=mix:keep_ends=false") == (
        "textprobe", {"confer": 200, "gamma": 0.9, "seeds": "mix", "keep_ends": False})
    with pytest.raises(UsageError, match="key=value"):
        parse_method_spec("textprobe:confer")
    assert file_stem("textprobe:confer=200") == "textprobe-confer-200"
