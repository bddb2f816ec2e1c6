"""Choose DeepCore's recipe on the zoos' train and calibration splits only (never the test split).

Usage: .venv/bin/python benchmarks/deepcore_select.py [--zoos digits-mlp:0:/tmp/zoo_cache_test,...] [--out FILE]

For every zoo (scenario, zoo seed, model cache) it builds the candidate points once per (eps, n_candidates) with
DeepCore's own code, queries every train- and calibration-split model on them, then scores each recipe variant
(selection rule, label weight, n_points, similarity) by what a real fingerprint would see: points selected with
the TRAIN split, the threshold calibrated on the CALIBRATION split's negatives exactly as ``fingerprint()`` does,
and calibration-split MIR / FIR at that threshold, ARUC and ROC-AUC. Because the threshold is fitted on the same
negatives, calibration FIR is 0 by construction; what the score rewards is calibration MIR and the margin.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
from typing import Any

import torch
import torch.nn.functional as F

DEFAULT_ZOOS = ("digits-mlp:0:/tmp/zoo_cache_test,digits-cnn:0:/tmp/zoo_cache_test,"
                "digits-mlp:1:/tmp/dc_zoo_seed1,digits-cnn:1:/tmp/dc_zoo_seed1")
GRID = {"eps": [0.02, 0.05], "n_candidates": [1000, 3000], "rule": ["least", "contrast"],
        "label_weight": [0.0, 1.0, 3.0], "worst": [False, True], "n_points": [50, 100, 200],
        "similarity": ["label", "soft"]}


def load_zoo(scenario: str, seed: int, cache: str) -> tuple[Any, Any]:
    """(owner, zoo) from the model cache; the zoo is the one `fpreg evaluate --seed SEED` builds."""
    from fp_registry.methods import make_owner
    from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
    from fp_registry.zoo.builder import build_zoo

    os.environ["FP_REGISTRY_CACHE"] = cache  # read at call time by fp_registry.config
    kw = owner_inputs(scenario)
    owner = make_owner(train_owner(scenario, seed), kw["task"], kw["data"], kw["labels"])
    zoo = build_zoo(owner, seed=seed, progress=False, name=scenario, alt_data=get_scenario(scenario).load_data().other)
    return owner, zoo


def candidates(owner: Any, eps: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCore's candidate points and the owner's probabilities on them (same code path as build())."""
    from fp_registry.algorithms.deepcore import DeepCore
    from fp_registry.algorithms.textprobe import other_class

    dc = DeepCore(eps=eps, n_candidates=n, steps=30)  # the owner-only recipe (results/deepcore.md)
    gen = torch.Generator().manual_seed(seed)
    x0 = dc._seeds(owner, gen, n)
    with torch.no_grad():
        own = owner.module(x0).argmax(1)
    x = dc._optimise(owner.module, owner, x0, other_class(own, owner.output_dim, gen))
    with torch.no_grad():
        return x, torch.softmax(owner.module(x), 1)


def split_probs(zoo: Any, split: str, x: torch.Tensor, n_classes: int) -> tuple[list, list]:
    from fp_registry.algorithms.deepcore import reference_probs

    s = zoo.split(split)
    return (reference_probs([z.model for z in s.positives], x, n_classes),
            reference_probs([z.model for z in s.negatives], x, n_classes))


def similarity(own: torch.Tensor, probs: torch.Tensor, kind: str) -> float:
    if kind == "label":
        return float((probs.argmax(1) == own.argmax(1)).float().mean())
    return max(float(F.cosine_similarity(probs, own, dim=1).mean()), 0.0)


def evaluate_variant(own: torch.Tensor, train: tuple, cal: tuple, v: dict[str, Any]) -> dict[str, float]:
    """Calibration-split metrics of one recipe variant (threshold from calibration negatives, as fingerprint())."""
    from fp_registry.algorithms.deepcore import candidate_ranking
    from fp_registry.calibration import choose_threshold
    from fp_registry.evaluation import metrics

    pos_refs = train[0] if v["rule"] == "contrast" else []
    keep = candidate_ranking(own, train[1], pos_refs, v["label_weight"], v["worst"])[:v["n_points"]]
    pos = [similarity(own[keep], p[keep], v["similarity"]) for p in cal[0]]
    neg = [similarity(own[keep], p[keep], v["similarity"]) for p in cal[1]]
    tau = choose_threshold(neg, pos)
    out = metrics.at_threshold(pos, neg, tau)
    return {"mir": out["mir"], "fir": out["fir"], "aruc": metrics.aruc(pos, neg), "auc": metrics.roc_auc(pos, neg),
            "margin": min(pos) - max(neg)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default=DEFAULT_ZOOS, help="scenario:seed:cache,... (the fingerprint seed = zoo seed)")
    ap.add_argument("--out", default="/tmp/deepcore_select.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    keys = [k for k in GRID if k not in ("eps", "n_candidates")]
    results: dict[str, dict[str, Any]] = {}
    for spec in args.zoos.split(","):
        scenario, seed, cache = spec.split(":")
        owner, zoo = load_zoo(scenario, int(seed), cache)
        for eps, n_cand in itertools.product(GRID["eps"], GRID["n_candidates"]):
            x, own = candidates(owner, eps, n_cand, int(seed))
            train, cal = (split_probs(zoo, s, x, owner.output_dim) for s in ("train", "calibration"))
            for values in itertools.product(*(GRID[k] for k in keys)):
                v = dict(zip(keys, values), eps=eps, n_candidates=n_cand)
                if v["rule"] == "least" and v["label_weight"] > 0:
                    continue
                name = json.dumps(v, sort_keys=True)
                results.setdefault(name, {})[spec.split(":/")[0]] = evaluate_variant(own, train, cal, v)
        print(f"done {spec}", flush=True)
    ranked = sorted(results.items(), key=lambda kv: rank_key(kv[1]))
    with open(args.out, "w") as fh:
        json.dump(ranked, fh, indent=1)
    for name, per_zoo in ranked[:15]:
        print(name, " ".join(f"{z}: mir={m['mir']:.3f} aruc={m['aruc']:.3f} margin={m['margin']:+.3f}"
                             for z, m in per_zoo.items()))
    return 0


def rank_key(per_zoo: dict[str, dict[str, float]]) -> tuple[float, float]:
    """Worst calibration MIR over zoos first, then worst ARUC (higher better): the bar must hold everywhere."""
    return (max(m["mir"] for m in per_zoo.values()), -min(m["aruc"] for m in per_zoo.values()))


if __name__ == "__main__":
    raise SystemExit(main())
