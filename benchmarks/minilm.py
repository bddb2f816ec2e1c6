"""MiniLM benchmark: black-box embedding geometry, CKA and weight Grams on derivatives vs from-scratch independents.

Usage: .venv/bin/python benchmarks/minilm.py [--build-only] [--stress] [--ft-steps 100] [--scratch-steps 80]
Models are cached (safetensors) under FP_REGISTRY_CACHE/minilm; the first run trains ~10 small models on CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: a network call would be a bug
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from fp_registry import minilm as M  # noqa: E402

SMALL = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}


@dataclass
class Entry:
    name: str
    family: str
    derived: bool
    split: str  # "calibration" or "test": test models never touch the threshold or the p-value null
    make: Callable[[], M.SentenceEncoder]
    cacheable: bool = True  # dynamic-int8 modules are rebuilt from their cached float parent instead


def plan(owner: M.SentenceEncoder, pairs: Any, ft: int, sc: int, stress: bool = False) -> list[Entry]:
    """Calibration and test suspects with disjoint seeds and settings; ``stress`` adds 3x longer fine-tunes."""
    def tuned(seed: int, lr: float) -> Callable[[], M.SentenceEncoder]:
        return lambda: M.cached_encoder(f"finetune(seed={seed},lr={lr},steps={ft})",
                                        lambda: M.finetuned(owner, pairs, seed, ft, lr))

    def indep(seed: int, small: bool = False, steps: int = sc) -> Callable[[], M.SentenceEncoder]:
        over = SMALL if small else {}
        key = f"scratch(seed={seed},{'small' if small else 'same'},steps={steps})"
        return lambda: M.cached_encoder(key, lambda: M.independent(pairs, seed, steps, **over))

    def distil(seed: int, steps: int) -> Callable[[], M.SentenceEncoder]:
        return lambda: M.cached_encoder(f"distill(seed={seed},small,steps={steps})",
                                        lambda: M.distilled(owner, pairs, seed, steps, **SMALL))

    extra = [Entry(f"finetune(s=23,lr=1e-4,steps={3 * ft})", "finetune-long", True, "test",
                   lambda: M.cached_encoder(f"finetune(seed=23,lr=0.0001,steps={3 * ft})",
                                            lambda: M.finetuned(owner, pairs, 23, 3 * ft, 1e-4)))] if stress else []
    return [
        Entry("finetune(s=11,lr=3e-5)", "finetune", True, "calibration", tuned(11, 3e-5)),
        Entry("prune(0.4)", "prune", True, "calibration", lambda: M.prune(owner, 0.4), False),
        Entry("distill(small,s=32)", "distill", True, "calibration", distil(32, 3 * sc)),
        *[Entry(f"scratch-same(s={s})", "indep-same", False, "calibration", indep(s)) for s in (101, 102, 103)],
        *[Entry(f"scratch-small(s={s})", "indep-small", False, "calibration", indep(s, True)) for s in (201, 202)],
        Entry("random-init(s=301)", "random-init", False, "calibration", lambda: M.scratch(301), False),
        Entry("finetune(s=21,lr=3e-5)", "finetune", True, "test", tuned(21, 3e-5)),
        Entry("finetune(s=22,lr=1e-4)", "finetune", True, "test", tuned(22, 1e-4)),
        Entry("prune(0.3)", "prune", True, "test", lambda: M.prune(owner, 0.3), False),
        Entry("prune(0.5)", "prune", True, "test", lambda: M.prune(owner, 0.5), False),
        Entry("int8", "quant", True, "test", lambda: M.quantize(owner), False),
        Entry("noise(0.05)", "noise", True, "test", lambda: M.add_noise(owner, 0.05, 1), False),
        Entry("noise(0.1)", "noise", True, "test", lambda: M.add_noise(owner, 0.1, 2), False),
        Entry("finetune(s=22)->prune(0.3)", "stacked", True, "test", lambda: M.prune(tuned(22, 1e-4)(), 0.3), False),
        Entry("finetune(s=21)->int8", "stacked", True, "test", lambda: M.quantize(tuned(21, 3e-5)()), False),
        Entry("distill(small,s=31)", "distill", True, "test", distil(31, 3 * sc)),
        *extra,
        *[Entry(f"scratch-same(s={s})", "indep-same", False, "test", indep(s)) for s in (111, 112, 113)],
        *[Entry(f"scratch-small(s={s})", "indep-small", False, "test", indep(s, True)) for s in (211, 212)],
        Entry("random-init(s=311)", "random-init", False, "test", lambda: M.scratch(311), False),
    ]


def build_all(entries: list[Entry]) -> dict[str, tuple[M.SentenceEncoder, float]]:
    """Every suspect with its build (or cache load) time in seconds."""
    built = {}
    for e in entries:
        start = time.perf_counter()
        built[e.name] = (e.make(), time.perf_counter() - start)
        print(f"  built {e.name:32s} {built[e.name][1]:7.1f} s", file=sys.stderr, flush=True)
    return built


def score_all(owner: M.SentenceEncoder, probes: torch.Tensor, entries: list[Entry],
              built: dict[str, tuple[M.SentenceEncoder, float]], seed: int) -> tuple[list[dict[str, Any]], Any]:
    """EmbedSim fingerprint and white-box nulls from the calibration split only; every suspect scored by all three."""
    import fp_registry as fpr
    from fp_registry import whitebox as W

    cal = [e for e in entries if e.split == "calibration"]
    start = time.perf_counter()
    fp = fpr.fingerprint(owner, method="embedsim", task="regression", data=probes, seed=seed, progress=False,
                         negatives=[built[e.name][0] for e in cal if not e.derived],
                         positives=[built[e.name][0] for e in cal if e.derived])
    fp_seconds = time.perf_counter() - start
    wb_x = probes[:128]  # 128 sentences, about 1,400 real tokens per layer for CKA
    nulls = W.fit_nulls(owner, [built[e.name][0] for e in cal if not e.derived], wb_x)
    rows = []
    for e in entries:
        model = built[e.name][0]
        t0 = time.perf_counter()
        v = fp.verify(model)
        t1 = time.perf_counter()
        ev = W.evidence(owner, model, wb_x, nulls)
        t2 = time.perf_counter()
        rows.append({"name": e.name, "family": e.family, "derived": e.derived, "split": e.split,
                     "bb": v.score, "bb_p": v.p_value, "match": v.is_match, "bb_s": t1 - t0,
                     "cka": ev["cka"]["score"], "cka_p": ev["cka"]["p_empirical"], "cka_pn": ev["cka"]["p_normal"],
                     "w": ev["weights"]["score"], "w_p": ev["weights"]["p_empirical"],
                     "w_pn": ev["weights"]["p_normal"], "wb_s": t2 - t1, "build_s": built[e.name][1]})
    return rows, (fp, fp_seconds)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"
    return str(v)


def print_tables(rows: list[dict[str, Any]], fp: Any, fp_seconds: float) -> None:
    from sklearn.metrics import roc_auc_score

    cols = ["name", "family", "split", "bb", "bb_p", "match", "cka", "cka_p", "cka_pn", "w", "w_p", "w_pn",
            "bb_s", "wb_s", "build_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    test = [r for r in rows if r["split"] == "test"]
    y = [int(r["derived"]) for r in test]
    print(f"\nembedsim threshold {fp.threshold:.3f} (calibrated on {len(fp.calibration.negative_scores)} "
          f"independents + {len(fp.calibration.positive_scores)} derivatives; fingerprint built in {fp_seconds:.1f} s)")
    print(f"test split: {sum(y)} derivatives, {len(y) - sum(y)} independents (none used for calibration)")
    for key, label in (("bb", "embedsim (black box)"), ("cka", "CKA (white box)"), ("w", "weight Gram (white box)")):
        print(f"ROC-AUC {label:26s} {roc_auc_score(y, [r[key] for r in test]):.3f}")
    tpr = np.mean([r["match"] for r in test if r["derived"]])
    fpr_ = np.mean([r["match"] for r in test if not r["derived"]])
    print(f"embedsim at its threshold: TPR {tpr:.3f}, FPR {fpr_:.3f}")
    print(f"mean seconds per suspect: embedsim verify {np.mean([r['bb_s'] for r in rows]):.2f}, "
          f"white box (CKA + Gram) {np.mean([r['wb_s'] for r in rows]):.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--ft-steps", type=int, default=100)
    ap.add_argument("--scratch-steps", type=int, default=80)
    ap.add_argument("--stress", action="store_true", help="add a 3x longer fine-tune at lr 1e-4 (slow to build)")
    ap.add_argument("--seed", type=int, default=0, help="fingerprint seed (probe choice)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    owner, tok = M.load_minilm(), M.load_tokenizer()
    pairs = M.training_pairs(tok)
    entries = plan(owner, pairs, args.ft_steps, args.scratch_steps, args.stress)
    built = build_all(entries)
    if args.build_only:
        return
    probes = M.tokenize(tok, M.template_sentences(400, seed=12345))  # the owner's probe pool, not training text
    rows, (fp, fp_seconds) = score_all(owner, probes, entries, built, args.seed)
    print_tables(rows, fp, fp_seconds)


if __name__ == "__main__":
    main()
