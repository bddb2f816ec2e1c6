"""Evaluation over several zoo seeds: the summary's counts and names, its files, and the CLI end to end."""
from __future__ import annotations

import json

import pytest
import torch

from fp_registry.evaluation.harness import _result
from fp_registry.evaluation.seeds import summarize, summary_markdown, write_summary


def _report(seed: int, scores: list[tuple[str, bool, float]], tau: float = 0.5) -> dict:
    rows = [{"name": f"digits-mlp/{name}", "family": "finetune" if derived else "homologous", "derived": derived,
             "score": s, "is_match": s >= tau, "n_queries": 10, "seconds": 0.01, "forward_seconds": 0.005,
             "utility": {}} for name, derived, s in scores]
    skipped = {"method": "tafa", "status": "not applicable", "reason": "GELU"}
    return {"scenario": "digits-mlp", "seed": seed, "methods": [_result("metav", tau, 1.0, 1.0, rows), skipped]}


def test_summary_counts_zoos_and_names_misses_and_false_matches(tmp_path) -> None:
    perfect = _report(5, [("finetune(a)", True, 0.9), ("retrain(k=0)", False, 0.1)])
    flawed = _report(6, [("extract(same)", True, 0.4), ("finetune(b)", True, 0.8),
                         ("retrain(k=1)", False, 0.6), ("retrain(k=2)", False, 0.2)])
    summary = summarize("digits-mlp", [perfect, flawed])
    metav, tafa = summary["methods"]
    assert summary["seeds"] == [5, 6] and tafa["totals"]["zoos"] == 0
    assert [z["status"] for z in tafa["zoos"]] == ["not applicable", "not applicable"]
    t = metav["totals"]
    assert (t["zoos"], t["perfect"], t["roc_auc_099"]) == (2, 1, 1)
    assert t["min_tpr"] == 0.5 and t["min_tnr"] == 0.5
    assert t["mir_005_same_arch_fir_0"] == 1 and metav["zoos"][1]["same_arch_fpr"] == 0.5  # one of 2 homologous
    assert t["mean_roc_auc"] == pytest.approx((1.0 + 0.75) / 2)  # seed 6: 3 of 4 pairs ranked right
    assert metav["zoos"][1]["missed"] == ["digits-mlp/extract(same)"]
    assert metav["zoos"][1]["false_matches"] == ["digits-mlp/retrain(k=1)"]
    text = summary_markdown(summary)
    assert "| metav | 2 | 1 | 1 | 0 | 1 | 0.875 |" in text  # ARUC 0.8 and 0.3: no zoo at >= 0.90
    assert "`extract(same)`" in text and "| tafa | 5 | not applicable |" in text
    write_summary(summary, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["methods"][0]["totals"]["perfect"] == 1


def test_cli_rejects_seeds_without_a_scenario_and_bad_seed_lists(capsys: pytest.CaptureFixture) -> None:
    from fp_registry.cli import run

    assert run(["evaluate", "--seeds", "1,2"]) == 4
    assert "--seeds needs --scenario" in capsys.readouterr().err
    assert run(["evaluate", "-s", "digits-mlp", "--seeds", "1,x"]) == 4
    assert "not a list of integers" in capsys.readouterr().err
    assert run(["evaluate", "-s", "digits-mlp", "--seed", "3", "--seeds", "1,2"]) == 4
    assert "--seed and --seeds were both given" in capsys.readouterr().err


def test_cli_evaluates_two_seeds_into_reports_and_a_summary(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from fp_registry.cli import run

    out = tmp_path / "eval"
    code = run(["evaluate", "-s", "digits-mlp", "-m", "ipguard:n_queries=20:steps=20", "--seeds", "3,4",
                "--size", "2", "-o", str(out), "-q", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seeds"] == [3, 4] and summary["methods"][0]["totals"]["zoos"] == 2
    assert (out / "seed-3" / "report.json").exists() and (out / "seed-4" / "report.md").exists()
    per_seed = json.loads((out / "seed-4" / "report.json").read_text())["methods"][0]["overall"]
    assert summary["methods"][0]["zoos"][1]["roc_auc"] == per_seed["roc_auc"]
    assert (out / "summary.md").read_text().startswith("# digits-mlp: 2 zoo seeds (3, 4)")
    report = json.loads((out / "seed-3" / "report.json").read_text())
    cal, sizes = report["methods"][0]["calibration"], report["zoo"]["calibration"]  # the scores behind the threshold
    assert (len(cal["negative_scores"]), len(cal["positive_scores"])) == (sizes["negatives"], sizes["positives"])
    env = report["environment"]
    assert env["torch_threads"] == torch.get_num_threads() and env["torch"] == torch.__version__
    assert f"with {env['torch_threads']} thread(s)" in (out / "seed-3" / "report.md").read_text()


def test_cli_calibration_reps_move_fresh_train_lineages_to_calibration(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from fp_registry.cli import run

    args = ["evaluate", "-s", "digits-mlp", "-m", "ipguard:n_queries=20:steps=20", "--size", "2", "-q", "--json"]
    assert run(args + ["-o", str(tmp_path / "plain")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert run(args + ["--calibration-reps", "1", "-o", str(tmp_path / "more")]) == 0
    more = json.loads(capsys.readouterr().out)
    assert more["calibration_reps"] == 1 and plain["calibration_reps"] == 0
    assert more["zoo"]["train"] == plain["zoo"]["train"] and more["zoo"]["test"] == plain["zoo"]["test"]
    for side in ("positives", "negatives"):  # a train replica's models join calibration
        assert more["zoo"]["calibration"][side] == plain["zoo"]["calibration"][side] + plain["zoo"]["train"][side]
    tested = lambda r: [s["name"] for s in r["methods"][0]["suspects"]]  # noqa: E731
    assert tested(more) == tested(plain)  # the test split is untouched
    assert "train-recipe replicas in calibration" in (tmp_path / "more" / "report.md").read_text()


def test_a_shared_zoo_gets_the_train_replicas_its_most_demanding_method_asks_for() -> None:
    from fp_registry.evaluation.harness import default_train_reps

    assert default_train_reps(["ipguard", "tafa:n_pairs=10"]) == 1
    assert default_train_reps(["ipguard", "deepcore:select=contrast"]) == 3  # DeepCore's ensemble learns from it too
    assert default_train_reps(["ipguard", "metav:n_queries=10"]) == 3  # MetaV learns from the train split
    assert default_train_reps([]) == 1
