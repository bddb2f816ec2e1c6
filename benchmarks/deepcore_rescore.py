"""Issue 7: re-score DeepCore offline from stored labels on the core points, under many score and threshold rules.

Usage:
  .venv/bin/python benchmarks/deepcore_rescore.py collect -s digits-mlp --seeds 67,68 -m deepcore -m SPEC -o L.json \
      [--calibration-reps 4]
  .venv/bin/python benchmarks/deepcore_rescore.py rules L.json [M.json ...] [--prune-calibration 0.75,0.85:0.9]
  .venv/bin/python benchmarks/deepcore_rescore.py natural -s digits-mlp --seeds 91,92 --reports DIR

Why: ``fpreg evaluate`` answers one question per run (one score, one threshold rule), and issue 7's failures are
decided by where tau falls among some 40 models per zoo. ``collect`` fingerprints each zoo as the harness does
(same seeds, same train replicas) and stores every calibration and test model's labels on the core points, with
those of ``--lookalikes`` models trained here and of the owner's own magnitude prunings. ``rules`` then recomputes
issue 7's bar (MIR <= 0.05 and no same-architecture false match) under each rule in seconds. Its ``kappa /
calibration`` row is the harness's rule; it gave the harness's numbers on digits-mlp 67-82
(benchmarks/results/deepcore.md, "Stop 21").
Zoos come from ``FP_REGISTRY_CACHE`` as with ``fpreg evaluate``. A spec ending in ``@K`` is drawn with fingerprint
seed = zoo seed + 1000003 K: an independent draw of the same recipe, averaged with its siblings by ``rules``.
``--calibration-reps K`` builds K more train replicas (lineages the fingerprint never saw) and stores their labels as
split ``extra``; ``rules`` then adds threshold rows with them in the calibration split.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fp_registry.zoo.recipes import SAME_ARCH_FAMILIES as SAME_ARCH  # light: no torch at import

DRAW_STRIDE = 1000003
Score = Callable[[np.ndarray], float]


def _labels(model: Any, x: Any, n_classes: int) -> list[int]:
    from fp_registry.suspect import Suspect

    return Suspect(model).labels(x, n_classes).tolist()


def owner_and_zoo(scenario: str, seed: int, extra_reps: int = 0,
                  tail_lineages: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """The scenario's owner for ``seed`` and its zoo with three train replicas, as ``fpreg evaluate`` builds them,
    plus ``extra_reps`` more train replicas (fresh seeds; the first three and both held-out splits are unchanged)
    and ``tail_lineages`` homologous lineages in split ``"tail"``."""
    from fp_registry.evaluation.harness import make_owner
    from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
    from fp_registry.zoo.builder import build_zoo

    kw = owner_inputs(scenario)
    owner = make_owner(train_owner(scenario, seed), "classification", kw["data"], kw["labels"], kw.get("input_shape"))
    zoo = build_zoo(owner, seed=seed, progress=False, name=scenario, alt_data=get_scenario(scenario).load_data().other,
                    train_reps=3 + extra_reps, tail_lineages=tail_lineages)
    return owner, zoo, {k: v for k, v in kw.items() if k in ("task", "data", "labels", "input_shape")}


def collect_zoo(scenario: str, seed: int, specs: list[str], lookalikes: int,
                ratios: tuple[float, ...], calibration_reps: int = 0) -> dict[str, Any]:
    """One zoo: per spec, the owner's, calibration, test, look-alike and pruned-owner labels on the core points.

    ``calibration_reps`` more train replicas are built and stored as split ``"extra"``: lineages the fingerprint never
    saw, which ``rules`` can add to the calibration split.
    """
    from fp_registry.algorithms.deepcore import SELECTION_SEED_OFFSET, homologous_references
    from fp_registry.algorithms.deepcore_ensemble import label_fidelity, owner_variants
    from fp_registry.evaluation.harness import parse_method_spec
    from fp_registry.fingerprints import fingerprint
    from fp_registry.methods import get_method_class

    owner, zoo, owner_kw = owner_and_zoo(scenario, seed, calibration_reps)
    model = owner.module
    pruned = dict(zip(ratios, owner_variants(model, ratios)))
    fidelity = dict(zip(ratios, label_fidelity(owner, list(pruned.values()))))
    # seeds apart from those of select_with="trained" (seed + offset), so no variant selected with these models
    extra, _ = homologous_references(owner, None, lookalikes, 10, seed + 2 * SELECTION_SEED_OFFSET) \
        if lookalikes else ([], "")
    out = {}
    for spec in specs:
        base, _, draw = spec.partition("@")
        name, settings = parse_method_spec(base)
        reps = get_method_class(name).zoo_train_reps
        split_zoo = zoo.replicas(reps)  # as evaluate_method
        fp = fingerprint(model, method=name, zoo=split_zoo, seed=seed + DRAW_STRIDE * int(draw or 0), progress=False,
                         **owner_kw, **settings)
        x, n = fp.tensors["core"]["x"], fp.spec["output_dim"]
        held_out = [z for z in split_zoo.members if z.split in ("calibration", "test")]
        unseen = [z for z in zoo.members if z.split == "train" and z.replica >= reps]
        rows = [{"split": "extra" if z.split == "train" else z.split, "name": z.name, "family": z.family,
                 "derived": z.derived, "labels": _labels(z.model, x, n), "score": fp.verify(z.model).score}
                for z in held_out + unseen]
        out[spec] = {"threshold": fp.threshold, "owner": fp.tensors["core"]["labels"].tolist(), "rows": rows,
                     "lookalikes": [_labels(m, x, n) for m in extra],
                     "prunings": {str(r): {"fidelity": fidelity[r], "labels": _labels(m, x, n)}
                                  for r, m in pruned.items()}}
    return out


def write_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def kappa(got: np.ndarray, own: np.ndarray, n_classes: int = 10) -> float:
    """The harness's DeepCore score: Cohen's kappa of the labels, clipped at 0."""
    import torch

    from fp_registry.algorithms.deepcore import chance_corrected

    agreement = float((got == own).mean())
    return max(chance_corrected(agreement, torch.as_tensor(got), torch.as_tensor(own), n_classes), 0.0)


def score_rules(own: np.ndarray, looks: np.ndarray) -> dict[str, Score]:
    """Scores of a suspect's labels: kappa, and agreement relative to look-alikes trained here (when there are any)."""
    rules: dict[str, Score] = {"kappa": lambda s: kappa(s, own)}
    if len(looks):
        major = np.array([np.bincount(col).argmax() for col in looks.T])
        rules["minus mean look-alike"] = lambda s: float((s == own).mean() - (looks == s).mean(1).mean())
        rules["minus max look-alike"] = lambda s: float((s == own).mean() - (looks == s).mean(1).max())
        rules["minus look-alike majority"] = lambda s: float((s == own).mean() - (s == major).mean())
    return rules


def bar(cal_neg: list[float], cal_pos: list[float], test_neg: list[float], test_pos: list[float],
        skip: int = 0) -> tuple[bool, bool, bool]:
    """(bar met, a same-arch false match, too many misses) at the calibrated threshold (``choose_threshold``)."""
    from fp_registry.calibration import choose_threshold

    tau = choose_threshold(cal_neg, cal_pos, skip_positives=skip)
    fir = any(s >= tau for s in test_neg)
    mir = sum(s < tau for s in test_pos) / max(len(test_pos), 1) > 0.05
    return not (fir or mir), fir, mir


def oracle(test_neg: list[float], test_pos: list[float]) -> bool:
    """Whether some threshold meets the bar: just above the highest same-architecture negative."""
    return sum(s <= max(test_neg) for s in test_pos) / max(len(test_pos), 1) <= 0.05


def _draws(per_seed: dict[str, Any]) -> dict[str, list[str]]:
    """Rows to score: each spec alone, and each recipe with several ``@K`` draws as the mean over its draws."""
    groups: dict[str, list[str]] = defaultdict(list)
    for spec in per_seed:
        groups[spec.partition("@")[0]].append(spec)
    rows = {spec: [spec] for spec in per_seed}
    rows.update({f"{base} (mean of {len(specs)} draws)": specs for base, specs in groups.items() if len(specs) > 1})
    return rows


def _scores(entry: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per score rule, each calibration / test model's score, and ``"pruning R"`` for the owner's pruning at R."""
    models = {r["name"]: r["labels"] for r in entry["rows"]}
    models.update({f"pruning {r}": p["labels"] for r, p in entry["prunings"].items()})
    return {rule: {name: fn(np.array(labels)) for name, labels in models.items()}
            for rule, fn in score_rules(np.array(entry["owner"]), np.array(entry["lookalikes"])).items()}


def _pruning_scores(entry: dict[str, Any], scores: dict[str, float], ratios: tuple[float, ...],
                    min_fidelity: float) -> list[float]:
    return [scores[f"pruning {r}"] for r, p in entry["prunings"].items()
            if float(r) in ratios and p["fidelity"] >= min_fidelity]


def zoo_outcomes(per_seed: dict[str, Any], prune_cal: tuple[tuple[float, ...], float] | None,
                 upper_ratio: float | None) -> dict[tuple[str, str, str], tuple[bool, bool, bool, bool]]:
    """(row, score rule, threshold rule) -> (bar met, false match, too many misses, oracle) on one zoo."""
    out = {}
    for label, specs in _draws(per_seed).items():
        entries = [per_seed[s] for s in specs]
        meta = {r["name"]: r for r in entries[0]["rows"]}
        per_draw = [_scores(e) for e in entries]
        for rule in (r for r in per_draw[0] if all(r in d for d in per_draw)):  # in score_rules' order
            score = {n: float(np.mean([d[rule][n] for d in per_draw])) for n in meta}
            split = {key: [score[n] for n, r in meta.items() if test(r)] for key, test in (
                ("cal_neg", lambda r: r["split"] == "calibration" and not r["derived"]),
                ("cal_pos", lambda r: r["split"] == "calibration" and r["derived"]),
                ("extra_neg", lambda r: r["split"] == "extra" and not r["derived"]),
                ("extra_pos", lambda r: r["split"] == "extra" and r["derived"]),
                ("test_neg", lambda r: r["split"] == "test" and not r["derived"] and r["family"] in SAME_ARCH),
                ("test_pos", lambda r: r["split"] == "test" and r["derived"]))}
            orc = oracle(split["test_neg"], split["test_pos"])
            added: dict[str, tuple[list[float], list[float]]] = {"calibration": ([], []),
                                                                 "calibration, skip 1": ([], [])}
            if split["extra_neg"]:  # collected with --calibration-reps
                added["calibration + extra replicas' independents"] = (split["extra_neg"], [])
                added["calibration + extra replicas"] = (split["extra_neg"], split["extra_pos"])
            if prune_cal and rule == "kappa" and len(entries) == 1:
                added[f"calibration + owner prunings {prune_cal[0]} (fidelity >= {prune_cal[1]})"] = \
                    ([], _pruning_scores(entries[0], per_draw[0][rule], *prune_cal))
            if upper_ratio is not None and rule == "kappa" and len(entries) == 1:
                added[f"UPPER BOUND, not allowed: + owner pruning {upper_ratio}"] = \
                    ([], _pruning_scores(entries[0], per_draw[0][rule], (upper_ratio,), 0.0))
            for name, (neg, pos) in added.items():
                met, fir, mir = bar(split["cal_neg"] + neg, split["cal_pos"] + pos, split["test_neg"],
                                    split["test_pos"], skip=1 if name.endswith("skip 1") else 0)
                out[(label, rule, name)] = (met, fir, mir, orc)
    return out


def rules(paths: list[str], prune_cal: tuple[tuple[float, ...], float] | None, upper_ratio: float | None,
          as_json: bool) -> None:
    """Print, per row and rule, on how many zoos the bar is met, and why the others fail."""
    zoos: dict[str, dict[str, Any]] = defaultdict(dict)
    for p in paths:
        for seed, per in json.loads(Path(p).read_text()).items():
            zoos[seed].update(per)
    tally: dict[tuple[str, str, str], dict[str, Any]] = {}
    for seed, per_seed in sorted(zoos.items(), key=lambda kv: int(kv[0])):
        for key, (met, fir, mir, orc) in zoo_outcomes(per_seed, prune_cal, upper_ratio).items():
            t = tally.setdefault(key, {"zoos": 0, "met": 0, "false_match": 0, "misses": 0, "oracle": 0, "failed": []})
            t["zoos"] += 1
            t["met"] += met
            t["false_match"] += fir
            t["misses"] += mir
            t["oracle"] += orc
            t["failed"] += [] if met else [int(seed)]
    if as_json:
        print(json.dumps([{"row": k[0], "score": k[1], "threshold": k[2], **v} for k, v in tally.items()], indent=1))
        return
    print("| row | score | threshold | bar met | with false matches | with > 5 % misses | oracle | failed zoos |")
    print("|---|---|---|---|---|---|---|---|")
    for (row, score, thr), t in tally.items():
        print(f"| {row} | {score} | {thr} | {t['met']} / {t['zoos']} | {t['false_match']} | {t['misses']} "
              f"| {t['oracle']} | {', '.join(map(str, t['failed'])) or '-'} |")


def natural(scenario: str, seeds: list[int], reports: str) -> None:
    """Are same-architecture look-alikes that score high also closer to the owner on natural held-out data?"""
    import torch
    from scipy.stats import spearmanr

    from fp_registry.scenarios import get_scenario

    x_other, y_other = get_scenario(scenario).load_data().other
    found = []
    for seed in seeds:
        report = json.loads((Path(reports) / f"seed-{seed}" / "report.json").read_text())
        result = next(m for m in report["methods"] if m["method"] == "deepcore")
        score = {s["name"]: s["score"] for s in result["suspects"]}
        owner, zoo, _ = owner_and_zoo(scenario, seed)
        model = owner.module
        x = x_other.reshape(len(x_other), *owner.input_shape)
        with torch.no_grad():
            own = model(x).argmax(1)
            wrong = own != y_other
            for z in (z for z in zoo.members if z.split == "test" and not z.derived and z.family in SAME_ARCH):
                got = z.model(x).argmax(1)
                found.append((score[z.name], float((got == own).float().mean()),
                              float((got[wrong] == own[wrong]).float().mean())))
    s, agree, errors = (np.array(c) for c in zip(*found))
    print(f"{len(found)} same-architecture test negatives; Spearman of the DeepCore score with label agreement on "
          f"the held-out data: {spearmanr(s, agree)[0]:.2f}, with the share of the owner's errors repeated: "
          f"{spearmanr(s, errors)[0]:.2f} (median share {np.median(errors):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("-s", "--scenario", required=True)
    c.add_argument("--seeds", required=True)
    c.add_argument("-m", "--method", action="append", required=True, help="a deepcore spec, optionally @K")
    c.add_argument("-o", "--out", required=True)
    c.add_argument("--lookalikes", type=int, default=8)
    c.add_argument("--ratios", default="0.7,0.75,0.8,0.85,0.9", help="the owner's pruning ratios to store")
    c.add_argument("--calibration-reps", type=int, default=0,
                   help="train replicas built beyond the method's, stored for extra calibration (rules)")
    r = sub.add_parser("rules")
    r.add_argument("paths", nargs="+")
    r.add_argument("--prune-calibration", help="RATIOS:MIN_FIDELITY, e.g. 0.75,0.85:0.9")
    r.add_argument("--upper-bound-ratio", type=float, help="a pruning ratio of the test split (upper bound only)")
    r.add_argument("--json", action="store_true")
    n = sub.add_parser("natural")
    n.add_argument("-s", "--scenario", required=True)
    n.add_argument("--seeds", required=True)
    n.add_argument("--reports", required=True, help="an `fpreg evaluate --seeds` output directory")
    a = ap.parse_args()
    if a.cmd == "collect":
        out, ratios = Path(a.out), tuple(float(v) for v in a.ratios.split(","))
        done = json.loads(out.read_text()) if out.exists() else {}
        for seed in (int(v) for v in a.seeds.split(",")):
            done[str(seed)] = collect_zoo(a.scenario, seed, a.method, a.lookalikes, ratios, a.calibration_reps)
            write_atomic(out, done)  # one zoo at a time, so a killed run keeps what it finished
            print(f"zoo {seed} done", flush=True)
    elif a.cmd == "rules":
        pc = None
        if a.prune_calibration:
            ratios, _, fid = a.prune_calibration.partition(":")
            pc = (tuple(float(v) for v in ratios.split(",")), float(fid or 0))
        rules(a.paths, pc, a.upper_bound_ratio, a.json)
    else:
        natural(a.scenario, [int(v) for v in a.seeds.split(",")], a.reports)


if __name__ == "__main__":
    main()
