"""Evaluate methods over several zoo seeds (one owner and one zoo per seed) and summarise across them."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .metrics import clean
from .report import _f


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
            "tnr": o["tnr"], "threshold": result["threshold"],
            "missed": [s["name"] for s in suspects if s["derived"] and not s["is_match"]],
            "false_matches": [s["name"] for s in suspects if not s["derived"] and s["is_match"]]}


def totals(zoos: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of zoos meeting the usual bars (TPR = TNR = 1, ROC-AUC >= 0.99, ARUC >= 0.90) and the means."""
    ok = [z for z in zoos if z.get("status") == "ok"]

    def count(test: Any) -> int:
        return sum(1 for z in ok if all(v is not None for v in z.values()) and test(z))

    def mean(key: str) -> float | None:
        values = [z[key] for z in ok if z[key] is not None]
        return statistics.fmean(values) if values else None

    return {"zoos": len(ok), "perfect": count(lambda z: z["tpr"] == 1.0 and z["tnr"] == 1.0),
            "roc_auc_099": count(lambda z: z["roc_auc"] >= 0.99), "aruc_090": count(lambda z: z["aruc"] >= 0.90),
            "mean_roc_auc": mean("roc_auc"), "mean_aruc": mean("aruc"),
            "min_tpr": min((z["tpr"] for z in ok), default=None), "min_tnr": min((z["tnr"] for z in ok), default=None)}


def summary_markdown(summary: dict[str, Any]) -> str:
    """Totals per method, then one row per method and zoo with what it missed and what it wrongly matched."""
    lines = [f"# {summary['scenario']}: {len(summary['seeds'])} zoo seeds ({', '.join(map(str, summary['seeds']))})",
             "", "| method | zoos | TPR = TNR = 1 | ROC-AUC ≥ 0.99 | ARUC ≥ 0.90 | mean ROC-AUC | mean ARUC | "
             "min TPR@τ | min TNR@τ |", "|---|---|---|---|---|---|---|---|---|"]
    for m in summary["methods"]:
        t = m["totals"]
        lines.append(f"| {m['method']} | {t['zoos']} | {t['perfect']} | {t['roc_auc_099']} | {t['aruc_090']} | "
                     f"{_f(t['mean_roc_auc'])} | {_f(t['mean_aruc'])} | {_f(t['min_tpr'])} | {_f(t['min_tnr'])} |")
    lines += ["", "| method | seed | ARUC | ROC-AUC | TPR@τ | TNR@τ | missed copies | false matches |",
              "|---|---|---|---|---|---|---|---|"]
    for m in summary["methods"]:
        for z in m["zoos"]:
            if z["status"] != "ok":
                lines.append(f"| {m['method']} | {z['seed']} | {z['status']} | | | | | |")
                continue
            lines.append(f"| {m['method']} | {z['seed']} | {_f(z['aruc'])} | {_f(z['roc_auc'])} | {_f(z['tpr'])} | "
                         f"{_f(z['tnr'])} | {_names(z['missed'])} | {_names(z['false_matches'])} |")
    return "\n".join(lines) + "\n"


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
