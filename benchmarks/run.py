"""Benchmark: every method on every scenario, one table of quality, time, verify/forward ratio and memory.

Usage: .venv/bin/python benchmarks/run.py [--scenarios digits-mlp,digits-cnn] [--methods ipguard] [--out DIR]

"verify ms/suspect" is the median wall time of ``fp.verify(model)`` (what a user calls) over 5 repeats per test
suspect; "bare forward ms" is the median, over 5 repeats interleaved with those calls, of one batched forward pass
of exactly the queries that verification sent (eval mode, ``torch.no_grad``); both are averaged over suspects.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _f(v: Any, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)


def row(scenario: str, r: dict[str, Any]) -> str:
    if r.get("status") != "ok":
        return f"| {scenario} | {r['method']} | {r.get('status')} |" + " |" * 10
    o = r["overall"]
    return (f"| {scenario} | {r['method']} | {_f(o['aruc'])} | {_f(o['roc_auc'])} | {_f(o['tpr'])} | {_f(o['tnr'])} | "
            f"{_f(o['tpr_at_1fpr'])} | {r['queries']} | {_f(r['fingerprint_seconds'], 1)} | "
            f"{_f(r['verify_seconds'] * 1000, 2)} | {_f(r['forward_seconds'] * 1000, 3)} | "
            f"{_f(r['verify_forward_ratio'], 2)} | {_f(r['peak_rss_mb'], 0)} |")


HEADER = ("| scenario | method | ARUC | ROC-AUC | TPR@τ | TNR@τ | TPR@1%FPR | queries | fingerprint s | "
          "verify ms/suspect | bare forward ms | verify/forward | peak RSS MB |\n" + "|---" * 13 + "|")


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _commit() -> str:
    """HEAD's short hash, marked "+dirty" when tracked files differ from it (the table then is not HEAD's)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    from fp_registry.evaluation import evaluate
    from fp_registry.plugins import methods
    from fp_registry.scenarios import SCENARIOS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--methods", default="", help="default: every registered method")
    p.add_argument("--out", default="benchmarks/out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--whitebox", action="store_true", help="also a METHOD+whitebox row: the fused score (README)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load_start = _load()
    names = [m for m in args.methods.split(",") if m] or sorted({cls.name for cls in methods().values()})
    lines = [HEADER]
    for scenario in [s for s in args.scenarios.split(",") if s]:
        start = time.perf_counter()
        report = evaluate(scenario, names, Path(args.out) / scenario, seed=args.seed, progress=not args.quiet,
                          whitebox=args.whitebox)
        print(f"{scenario}: zoo {report['zoo_seconds']:.0f} s, total {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
        lines += [row(scenario, r) for r in report["methods"]]
    table = "\n".join(lines)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    context = (f"Measured {stamp}, `{' '.join(sys.argv)}`, commit {_commit()}, load average at start "
               f"{load_start} / end {_load()} (1/5/15 min, 2 cores)")
    (Path(args.out) / "benchmark.md").write_text(f"{context}\n\n{table}\n")
    print(context)
    (Path(args.out) / "argv.json").write_text(json.dumps(sys.argv))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
