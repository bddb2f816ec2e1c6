"""Write an evaluation report: report.json (everything), report.md (tables) and PNG plots."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .metrics import clean


def file_stem(method: str) -> str:
    """A method spec as a file name: ``"textprobe:confer=200"`` -> ``"textprobe-confer-200"``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", method)


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.{digits}f}"
    return str(value)


def summary_table(report: dict[str, Any]) -> str:
    """One Markdown row per method: quality on the test split and cost."""
    head = ("| method | ARUC | ROC-AUC | TPR@τ | TNR@τ | TPR@1%FPR | same-arch FPR | τ | queries | "
            "fingerprint s | verify s/suspect | verify/forward |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in report["methods"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['method']} | {r.get('status')} |" + " |" * 11)
            continue
        o = r["overall"]
        lines.append(f"| {r['method']} | {_f(o['aruc'])} | {_f(o['roc_auc'])} | {_f(o['tpr'])} | {_f(o['tnr'])} | "
                     f"{_f(o['tpr_at_1fpr'])} | {_f(r['same_arch_fpr'])} | {_f(r['threshold'])} | {r['queries']} | "
                     f"{_f(r['fingerprint_seconds'], 1)} | {_f(r['verify_seconds'], 4)} | "
                     f"{_f(r['verify_forward_ratio'], 2)} |")
    return "\n".join(lines)


def family_table(result: dict[str, Any]) -> str:
    """Per-family rows: derived families (TPR, MIR, ROC-AUC vs all negatives), independent ones (TNR, FIR)."""
    lines = ["| family | kind | n | ROC-AUC | TPR / TNR at τ | MIR / FIR |", "|---|---|---|---|---|---|"]
    for fam, m in result["families"].items():
        kind = "derived" if m["derived"] else "independent"
        rate = m.get("tpr", m.get("tnr"))
        err = m.get("mir", m.get("fir"))
        lines.append(f"| {fam} | {kind} | {m['n']} | {_f(m['roc_auc'])} | {_f(rate)} | {_f(err)} |")
    return "\n".join(lines)


def member_table(report: dict[str, Any]) -> str:
    """One row per test-split suspect: lineage, family, utility on the disjoint data, each method's score."""
    ok = [r for r in report["methods"] if r.get("status") == "ok"]
    if not ok:
        return ""
    metric = next(iter(ok[0]["suspects"][0]["utility"]), "utility") if ok[0]["suspects"] else "utility"
    head = f"| suspect | family | kind | {metric} | " + " | ".join(f"{r['method']} score" for r in ok) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    owner = (report.get("owner_utility") or {}).get(metric)
    if owner is not None:
        lines.append(f"| owner (reference) | - | - | {_f(owner)} |" + " - |" * len(ok))
    scores = [{s["name"]: s["score"] for s in r["suspects"]} for r in ok]
    for s in ok[0]["suspects"]:
        kind = "derived" if s["derived"] else "independent"
        lines.append(f"| `{s['name']}` | {s['family']} | {kind} | {_f((s.get('utility') or {}).get(metric))} | "
                     + " | ".join(_f(sc.get(s["name"])) for sc in scores) + " |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    z = report["zoo"]
    parts = [f"# Evaluation: {report['scenario']} ({report['task']})", "",
             f"Zoo (seed {report['seed']}, built in {report['zoo_seconds']:.0f} s): "
             + ", ".join(f"{s} {v['positives']}+/{v['negatives']}-" for s, v in z.items())
             + (f" (train split built {report['train_reps']} times)" if report.get("train_reps", 1) > 1 else "")
             + (f" (+ {report['calibration_reps']} train-recipe replicas in calibration)"
                if report.get("calibration_reps") else "")
             + (f" (+ {report['tail_lineages']} homologous lineages for the strata rule's threshold only)"
                if report.get("tail_lineages") else "")
             + ". Metrics on the test split only; thresholds come from the calibration split.", "",
             summary_table(report), ""]
    env = report.get("environment")
    if env:  # zoos are reproducible bit for bit only with the same torch version and thread count
        parts.insert(3, f"Environment: fp_registry {env['fp_registry']}, torch {env['torch']} with "
                        f"{env['torch_threads']} thread(s), Python {env['python']}.")
    if report.get("holdout_families"):
        parts.insert(3, f"Held-out families (test only): {', '.join(report['holdout_families'])}.")
    for r in report["methods"]:
        if r.get("status") == "ok":
            parts += [f"## {r['method']} per family", "", family_table(r), "",
                      f"![curves]({file_stem(r['method'])}_curves.png)",
                      f"![histogram]({file_stem(r['method'])}_hist.png)", ""]
    members = member_table(report)
    if members:
        parts += ["## Test-split suspects: utility on the disjoint data and scores", "", members, ""]
    return "\n".join(parts)


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.md and the plots into ``out_dir``; return the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = clean(report)
    paths = [out_dir / "report.json", out_dir / "report.md"]
    paths[0].write_text(json.dumps(data, indent=1))
    paths[1].write_text(markdown(data))
    try:
        from .plots import plot_method
    except ImportError:  # matplotlib is the optional "plots" extra
        return paths
    for r in data["methods"]:
        if r.get("status") == "ok":
            paths += plot_method(r, report["scenario"], out_dir)
    return paths
