"""MetaV experiments: one cached zoo, many settings; selection metrics on calibration, report on test."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import torch

torch.set_num_threads(1)


def load(scenario: str, seed: int = 0) -> tuple[Any, dict[str, Any], Any]:
    """Owner, fingerprint kwargs and the scenario's (cached) zoo, exactly as `fpreg evaluate` builds them."""
    from fp_registry.methods import make_owner
    from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
    from fp_registry.algorithms.metav import MetaV
    from fp_registry.zoo.builder import build_zoo

    sc = get_scenario(scenario)
    model, kw = train_owner(scenario, seed), owner_inputs(scenario)
    owner = make_owner(model, kw["task"], kw["data"], kw.get("labels"), kw.get("input_shape"))
    zoo = build_zoo(owner, seed=seed, progress=False, name=scenario, alt_data=sc.load_data().other,
                    train_reps=MetaV.zoo_train_reps)
    return model, kw, zoo


def run(model: Any, kw: dict[str, Any], zoo: Any, settings: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Fingerprint with ``settings``; metrics on the calibration split (for choosing) and the test split."""
    from fp_registry.evaluation import metrics
    from fp_registry.fingerprints import fingerprint

    start, cpu = time.perf_counter(), time.process_time()
    fp = fingerprint(model, method="metav", zoo=zoo, seed=seed, progress=False, **kw, **settings)
    secs, cpu = time.perf_counter() - start, time.process_time() - cpu
    out: dict[str, Any] = {"settings": settings, "seconds": round(secs, 1), "cpu": round(cpu, 1), "tau": fp.threshold,
                           "best_step": fp.info.get("best_step"), "steps_run": fp.info.get("steps_run")}
    cal = fp.calibration
    out["cal"] = metrics.summary(cal.positive_scores, cal.negative_scores, fp.threshold)
    rows = [(z, fp.verify(z.model).score) for z in zoo.members if z.split == "test"]
    pos = [s for z, s in rows if z.derived]
    neg = [s for z, s in rows if not z.derived]
    out["test"] = metrics.summary(pos, neg, fp.threshold)
    out["worst"] = {"pos": sorted((round(s, 4), z.family) for z, s in rows if z.derived)[:3],
                    "neg": sorted(((round(s, 4), z.family) for z, s in rows if not z.derived), reverse=True)[:3]}
    out["temps"] = temperature_sweep(fp, zoo)
    logit = lambda sc: round(math.log(max(sc, 1e-300) / max(1 - sc, 1e-300)), 1)  # noqa: E731
    out["logits"] = {"owner": logit(fp.verify(model).score),
                     "cal_pos": sorted(logit(v) for v in cal.positive_scores)[:4],
                     "cal_neg": sorted((logit(v) for v in cal.negative_scores), reverse=True)[:4],
                     "test_pos": sorted(logit(v) for v in pos)[:4],
                     "test_neg": sorted((logit(v) for v in neg), reverse=True)[:4]}
    return out


def temperature_sweep(fp: Any, zoo: Any, temps: tuple[float, ...] = (1.0, 0.5, 0.33, 0.25)) -> dict[str, Any]:
    """ARUC of sigmoid(logit / T) for a few T: T only rescales scores, never the ranking."""
    from fp_registry.evaluation import metrics

    logits: dict[tuple[str, bool], list[float]] = {}
    for z in zoo.members:
        if z.split in ("calibration", "test"):
            logits.setdefault((z.split, z.derived), []).append(fp.verify(z.model).evidence["logit"])
    sig = lambda v, t: 1 / (1 + math.exp(-max(-700.0, v / t)))  # noqa: E731
    out = {}
    for t in temps:
        out[t] = {split: round(metrics.aruc([sig(v, t) for v in logits[(split, True)]],
                                            [sig(v, t) for v in logits[(split, False)]]), 3)
                  for split in ("calibration", "test")}
    return out


def fmt(r: dict[str, Any]) -> str:
    c, t = r["cal"], r["test"]
    return (f"{json.dumps(r['settings'])} {r['seconds']}s (cpu {r['cpu']}s) step {r['best_step']}/{r['steps_run']} tau={r['tau']:.4f} | "
            f"CAL aruc {c['aruc']:.3f} auc {c['roc_auc']:.3f} | TEST aruc {t['aruc']:.3f} auc {t['roc_auc']:.3f} "
            f"tpr {t['tpr']:.3f} tnr {t['tnr']:.3f} tpr1 {t['tpr_at_1fpr']:.3f}")


def mean_line(results: list[dict[str, Any]]) -> str:
    """Mean over fingerprint seeds (calibration split first: that is what settings are chosen on)."""
    mean = lambda split, k: sum(r[split][k] for r in results) / len(results)  # noqa: E731
    worst = lambda split, k: min(r[split][k] for r in results)  # noqa: E731
    return (f"MEAN over {len(results)} seeds: CAL aruc {mean('cal', 'aruc'):.3f} auc {mean('cal', 'roc_auc'):.3f} "
            f"min-aruc {worst('cal', 'aruc'):.3f} | TEST aruc {mean('test', 'aruc'):.3f} auc {mean('test', 'roc_auc'):.3f} "
            f"min tpr {worst('test', 'tpr'):.3f} min tnr {worst('test', 'tnr'):.3f} | "
            f"{max(r['seconds'] for r in results):.1f}s max")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenario")
    ap.add_argument("configs", nargs="*", help="JSON dicts of metav settings (default: the defaults)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp-seeds", default="0", help="comma-separated fingerprint seeds (the zoo keeps --seed)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    model, kw, zoo = load(a.scenario, a.seed)
    print(f"zoo loaded in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    seeds = [int(v) for v in a.fp_seeds.split(",")]
    for cfg in a.configs or ["{}"]:
        results = []
        for seed in seeds:
            r = run(model, kw, zoo, json.loads(cfg), seed)
            results.append(r)
            print(f"seed {seed}: " + fmt(r), flush=True)
            print("   T sweep", r["temps"], flush=True)
            if a.verbose:
                print("   worst", r["worst"], flush=True)
                print("   logits", r["logits"], flush=True)
        if len(seeds) > 1:
            print(mean_line(results), flush=True)


if __name__ == "__main__":
    main()
