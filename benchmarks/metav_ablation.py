"""MetaV ablation on one cached zoo: N queries, fixed vs adaptive queries, and the verifier design choices.

Usage: .venv/bin/python benchmarks/metav_ablation.py digits-mlp --fp-seeds 0,1 > ablation.md
Scores are test-split metrics (mean over fingerprint seeds); ``cal ARUC`` is what defaults were chosen on.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

torch.set_num_threads(1)

#: (label, settings overriding the defaults)
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("N = 10", {"n_queries": 10}),
    ("N = 50 (default)", {}),
    ("N = 100", {"n_queries": 100}),
    ("N = 50, fixed random queries (adaptive=False)", {"adaptive": False}),
    ("N = 50, queries initialised from data only (init=data)", {"init": "data"}),
    ("no on-the-fly modified copies (aug_pos=aug_neg=0)", {"aug_pos": 0, "aug_neg": 0}),
    ("free MLP verifier 128-64-32 on owner residuals (monotone=False)",
     {"monotone": False, "hidden": [128, 64, 32], "lr_verifier": 1e-3}),
    ("previous design: free MLP on zoo-centred probabilities, 400 steps, T=1",
     {"monotone": False, "hidden": [128, 64, 32], "lr_verifier": 1e-3, "features": "prob", "center": "zoo",
      "aug_pos": 0, "aug_neg": 0, "init": "data", "holdout": 0.25, "select": "margin", "steps": 400,
      "eval_every": 10, "score_temperature": 1.0}),
]


def main() -> None:
    sys.path.insert(0, "benchmarks")
    from metav_experiments import load, run

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenario", nargs="?", default="digits-mlp")
    ap.add_argument("--fp-seeds", default="0,1")
    ap.add_argument("--only", default="", help="comma-separated row numbers (0-based) to run")
    a = ap.parse_args()
    seeds = [int(v) for v in a.fp_seeds.split(",")]
    rows = [c for i, c in enumerate(CONFIGS) if not a.only or str(i) in a.only.split(",")]
    model, kw, zoo = load(a.scenario)
    print(f"| setting ({a.scenario}, seeds {a.fp_seeds}) | cal ARUC | ARUC | ROC-AUC | TPR@τ | TNR@τ | TPR@1%FPR | fp s (cpu) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, cfg in rows:
        res = [run(model, kw, zoo, cfg, seed) for seed in seeds]
        m = lambda split, k: sum(r[split][k] for r in res) / len(res)  # noqa: E731
        cpu = sum(r["cpu"] for r in res) / len(res)
        print(f"| {label} | {m('cal', 'aruc'):.3f} | {m('test', 'aruc'):.3f} | {m('test', 'roc_auc'):.3f} | "
              f"{m('test', 'tpr'):.3f} | {m('test', 'tnr'):.3f} | {m('test', 'tpr_at_1fpr'):.3f} | {cpu:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
