"""Evaluate methods over several zoo seeds (one owner and one zoo per seed) and summarise across them."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .metrics import clean
from .report import _f

#: the per-zoo numbers a bar is tested on; a zoo missing one (e.g. no negatives) counts for no bar
METRICS = ("aruc", "roc_auc", "tpr", "tnr", "same_arch_fpr")


def evaluate_seeds(scenario: str, methods: list[str], seeds: list[int], out_dir: str | Path | None = None,
                   progress: bool = True, **options: Any) -> dict[str, Any]:
    """Run :func:`harness.evaluate` once per seed (reports under ``OUT/seed-S``), then :func:`summarize` them.

    Why: one zoo gives 20-odd test suspects, and a method chosen or tuned on it looks better there than on the
    next owner. A new seed trains a new owner and a new zoo, so zoos never looked at are held-out evidence.
    """
    from .harness import evaluate

    reports = []
    for seed in seeds:
        sub = None if out_dir is None else Path(out_dir) / f"seed-{seed}"
        reports.append(evaluate(scenario, methods, sub, seed=seed, progress=progress, **options))
    summary = summarize(scenario, reports)
    if out_dir is not None:
        write_summary(summary, Path(out_dir))
    return summary


def summarize(scenario: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: one row per zoo (quality at τ, missed copies, false matches) and totals over the zoos."""
    methods: dict[str, dict[str, Any]] = {}
    for report in reports:
        for result in report["methods"]:
            entry = methods.setdefault(result["method"], {"method": result["method"], "zoos": []})
            entry["zoos"].append(_zoo_row(report["seed"], result))
    for entry in methods.values():
        entry["totals"] = totals(entry["zoos"])
    return clean({"scenario": scenario, "seeds": [r["seed"] for r in reports], "methods": list(methods.values())})


def _zoo_row(seed: int, result: dict[str, Any]) -> dict[str, Any]:
    if result.get("status") != "ok":
        return {"seed": seed, "status": result.get("status"), "reason": result.get("reason", "")}
    o, suspects = result["overall"], result["suspects"]
    return {"seed": seed, "status": "ok", "aruc": o["aruc"], "roc_auc": o["roc_auc"], "tpr": o["tpr"],
            "tnr": o["tnr"], "same_arch_fpr": result.get("same_arch_fpr"), "threshold": result["threshold"],
            "missed": [s["name"] for s in suspects if s["derived"] and not s["is_match"]],
            "false_matches": [s["name"] for s in suspects if not s["derived"] and s["is_match"]]}


def totals(zoos: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of zoos meeting the usual bars and the means.

    The bars: TPR = TNR = 1, ROC-AUC >= 0.99, ARUC >= 0.90, and DeepCore's (issue 7): MIR <= 0.05 with no false
    match among same-architecture independents.
    """
    ok = [z for z in zoos if z.get("status") == "ok"]

    def count(test: Any) -> int:
        return sum(1 for z in ok if all(z[k] is not None for k in METRICS) and test(z))

    def mean(key: str) -> float | None:
        values = [z[key] for z in ok if z[key] is not None]
        return statistics.fmean(values) if values else None

    return {"zoos": len(ok), "perfect": count(lambda z: z["tpr"] == 1.0 and z["tnr"] == 1.0),
            "roc_auc_099": count(lambda z: z["roc_auc"] >= 0.99), "aruc_090": count(lambda z: z["aruc"] >= 0.90),
            "mir_005_same_arch_fir_0": count(lambda z: 1 - z["tpr"] <= 0.05 + 1e-12 and z["same_arch_fpr"] == 0),
            "mean_roc_auc": mean("roc_auc"), "mean_aruc": mean("aruc"),
            "min_tpr": min((z["tpr"] for z in ok), default=None), "min_tnr": min((z["tnr"] for z in ok), default=None)}


def summary_markdown(summary: dict[str, Any]) -> str:
    """Totals per method, then one row per method and zoo with what it missed and what it wrongly matched."""
    seeds = ", ".join(map(str, summary["seeds"]))
    lines = [f"# {summary['scenario']}: {len(summary['seeds'])} zoo seeds ({seeds})",
             "", "| method | zoos | TPR = TNR = 1 | ROC-AUC ≥ 0.99 | ARUC ≥ 0.90 | "
             "MIR ≤ 0.05 and same-arch FIR = 0 | mean ROC-AUC | mean ARUC | min TPR@τ | min TNR@τ |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_totals_line(m["method"], m["totals"]) for m in summary["methods"]]
    lines += ["", "| method | seed | ARUC | ROC-AUC | TPR@τ | TNR@τ | same-arch FPR | missed copies | "
              "false matches |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [_zoo_line(m["method"], z) for m in summary["methods"] for z in m["zoos"]]
    return "\n".join(lines) + "\n"


def _totals_line(method: str, t: dict[str, Any]) -> str:
    counts = (t["zoos"], t["perfect"], t["roc_auc_099"], t["aruc_090"], t["mir_005_same_arch_fir_0"])
    means = (t["mean_roc_auc"], t["mean_aruc"], t["min_tpr"], t["min_tnr"])
    return f"| {method} | " + " | ".join([*map(str, counts), *map(_f, means)]) + " |"


def _zoo_line(method: str, z: dict[str, Any]) -> str:
    if z["status"] != "ok":
        return f"| {method} | {z['seed']} | {z['status']} | | | | | | |"
    values = " | ".join(_f(z[k]) for k in METRICS)
    return f"| {method} | {z['seed']} | {values} | {_names(z['missed'])} | {_names(z['false_matches'])} |"


def _names(names: list[str]) -> str:
    # the scenario prefix repeats on every name; the lineage after it is what tells suspects apart
    return "; ".join(f"`{n.split('/', 1)[-1]}`" for n in names) or "-"


def write_summary(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """``summary.json`` and ``summary.md`` beside the per-seed report directories."""
    from ..backends import write_json_atomic

    paths = [out_dir / "summary.json", out_dir / "summary.md"]
    write_json_atomic(paths[0], summary)
    paths[1].write_text(summary_markdown(summary))
    return paths
