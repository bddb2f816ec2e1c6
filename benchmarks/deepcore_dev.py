"""Issue 7: compare DeepCore recipes on the TEST splits of development zoos (zoos already looked at, never held-out).

Usage: .venv/bin/python benchmarks/deepcore_dev.py [--zoos digits-mlp:0:/tmp/zoo_cache_test,...] [--draws 3]

Why a separate script from ``deepcore_select.py``: that one ranks recipes on train + calibration splits only;
once a zoo's test split has been looked at it is development data, and this script measures there what issue 7's
bar asks (test-split MIR <= 0.05 and FIR = 0 at the calibrated threshold). A recipe chosen here must be re-checked
on zoos built afterwards (fresh zoo seeds) before its numbers count as held-out.

Per zoo and candidate draw (fingerprint seed = zoo seed + 1000 x draw, draw 0 is what ``fingerprint()`` builds)
it makes the candidates once with DeepCore's own code, queries every zoo model on them, then for each variant:
points selected with the TRAIN split, threshold from the CALIBRATION split (``choose_threshold``, as
``fingerprint()``), metrics on the TEST split.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from deepcore_select import candidates, load_zoo, similarity  # noqa: E402

DEV_ZOOS = ",".join(f"{sc}:{seed}:{cache}" for seed, cache in
                    ((0, "/tmp/zoo_cache_test"), (1, "/tmp/dc_zoo_seed1"), (2, "/tmp/dc_zoo_seed2"),
                     (3, "/tmp/dc_zoo_seed3"), (4, "/tmp/dc_zoo_seed4")) for sc in ("digits-mlp", "digits-cnn"))
#: (eps, n_candidates): (0.02, 500) was the default before issue 7, (0.05, 3000) the first issue-7 pick
POOLS = [(0.02, 500), (0.05, 3000), (0.05, 6000)]
VARIANTS = {"rule": ["least", "contrast"], "n_points": [100, 200], "similarity": ["label", "soft"]}


def split_probs(zoo: Any, x: torch.Tensor, n_classes: int) -> dict[str, tuple[list, list, list]]:
    """Per split: (derived probs, independent probs, independent families)."""
    from fp_registry.algorithms.deepcore import reference_probs

    out = {}
    for name in ("train", "calibration", "test"):
        s = zoo.split(name)
        out[name] = (reference_probs([z.model for z in s.positives], x, n_classes),
                     reference_probs([z.model for z in s.negatives], x, n_classes), [z.family for z in s.negatives])
    return out


def evaluate(own: torch.Tensor, probs: dict[str, tuple], v: dict[str, Any]) -> dict[str, float]:
    """Test-split metrics of one variant: selection on train, threshold on calibration."""
    from fp_registry.algorithms.deepcore import candidate_ranking
    from fp_registry.calibration import choose_threshold
    from fp_registry.evaluation import metrics
    from fp_registry.zoo.recipes import SAME_ARCH_FAMILIES

    copies = probs["train"][0] if v["rule"] == "contrast" else []
    keep = candidate_ranking(own, probs["train"][1], copies, 0.0)[:v["n_points"]]
    score = lambda ps: [similarity(own[keep], p[keep], v["similarity"]) for p in ps]  # noqa: E731
    tau = choose_threshold(score(probs["calibration"][1]), score(probs["calibration"][0]))
    pos, neg = score(probs["test"][0]), score(probs["test"][1])
    same = [s for s, fam in zip(neg, probs["test"][2]) if fam in SAME_ARCH_FAMILIES]
    at = metrics.at_threshold(pos, neg, tau)
    return {"aruc": metrics.aruc(pos, neg), "auc": metrics.roc_auc(pos, neg), "mir": at["mir"], "fir": at["fir"],
            "same_fir": 1 - metrics.uniqueness(same, tau), "margin": min(pos) - max(neg)}


def passes(m: dict[str, float]) -> bool:
    """Issue 7's bar on one zoo: at most 1 of 22 derived test models missed, no independent one flagged."""
    return m["mir"] <= 0.05 and m["fir"] == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default=DEV_ZOOS, help="scenario:zoo_seed:cache,...")
    ap.add_argument("--draws", type=int, default=3, help="candidate draws per zoo (fingerprint seeds)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for spec in args.zoos.split(","):
        scenario, seed, cache = spec.split(":")
        owner, zoo = load_zoo(scenario, int(seed), cache)
        for (eps, n_cand), draw in itertools.product(POOLS, range(args.draws)):
            x, own = candidates(owner, eps, n_cand, int(seed) + 1000 * draw)
            probs = split_probs(zoo, x, owner.output_dim)
            for values in itertools.product(*VARIANTS.values()):
                v = dict(zip(VARIANTS, values))
                name = f"eps={eps} n_candidates={n_cand} " + " ".join(f"{k}={val}" for k, val in v.items())
                results.setdefault(name, []).append((f"{scenario}:{seed}", evaluate(own, probs, v)))
        print(f"done {scenario} seed {seed}", flush=True)
    ranked = sorted(results.items(), key=lambda kv: (-sum(passes(m) for _, m in kv[1]),
                                                      -sum(m["aruc"] for _, m in kv[1])))
    for name, rows in ranked:
        ok = sum(passes(m) for _, m in rows)
        aruc = sum(m["aruc"] for _, m in rows) / len(rows)
        failing = sorted({z for z, m in rows if not passes(m)})
        print(f"{name}: passes {ok}/{len(rows)}, mean ARUC {aruc:.3f}, fails on {', '.join(failing) or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
