"""Issue 7, pre-registered check 9: decision rules for DeepCore with white-box evidence, per zoo.

Usage:
  FP_REGISTRY_CACHE=DIR .venv/bin/python benchmarks/deepcore_strata.py collect -s digits-mlp --seeds 279,280 -o S.json
  .venv/bin/python benchmarks/deepcore_strata.py rules S.json [T.json ...]

``collect`` fingerprints each zoo as ``fpreg evaluate -m deepcore --whitebox`` does (three train replicas, the
default recipe, the white-box reference from the calibration independents) and stores, for every calibration and
test model, its DeepCore score (kappa) and its white-box statistics in null-spread units (t, as in
:func:`fp_registry.fusion.fused_score`). ``rules`` then scores issue 7's bar (MIR <= 0.05 and no same-architecture
false match, at thresholds from the calibration split only) under four decision rules:

- D: the black box alone, at the calibrated threshold.
- F: the fused score ``max(t_bb, t_cka - 5, t_weights - 5)`` at its own calibrated threshold (the product today).
- OR: a white-box statistic at or past the gate (5 spreads) matches; otherwise D.
- ST: as OR, but a suspect whose weights can be compared (same-shape matrices: the owner's architecture) and are
  not past the gate is held to a threshold calibrated on the calibration models of that same stratum.

Why ST: look-alikes that the black box scores high are same-architecture retrains; copies of that architecture
that keep no weights are students, which the black box scores far higher than the weakest copies overall (80 %
prunings, small students), and those the weights or the plain threshold already judge.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))

from deepcore_rescore import owner_and_zoo, write_atomic  # noqa: E402

from fp_registry.zoo.recipes import SAME_ARCH_FAMILIES as SAME  # noqa: E402

Row = dict[str, Any]


def collect_zoo(scenario: str, seed: int) -> dict[str, Any]:
    from fp_registry.fingerprints import fingerprint
    from fp_registry.methods import get_method_class

    owner, zoo, kw = owner_and_zoo(scenario, seed)
    split_zoo = zoo.replicas(get_method_class("deepcore").zoo_train_reps)
    fp = fingerprint(owner.module, method="deepcore", zoo=split_zoo, seed=seed, progress=False, whitebox=True, **kw)
    ref, rows = fp.meta["whitebox"], []
    for z in (z for z in split_zoo.members if z.split in ("calibration", "test")):
        rows.append({"split": z.split, "name": z.name, "family": z.family, "derived": z.derived,
                     "kappa": fp.verify(z.model).score, "t": whitebox_t(ref, owner.module, z.model)})
    return {"rows": rows}


def whitebox_t(ref: dict[str, Any], owner: Any, suspect: Any) -> dict[str, float]:
    """The suspect's white-box statistics in null-spread units, as :func:`fp_registry.fusion.fused_score` has them."""
    from fp_registry.fusion import whitebox_units
    from fp_registry.whitebox import check

    return whitebox_units(check(ref, owner, suspect), ref["nulls"])


def stratum(row: Row, gate: float) -> str:
    """W: past the gate; S: weights comparable (same architecture) but not past it; O: no weight statistic."""
    if row["t"] and max(row["t"].values()) >= gate:
        return "W"
    return "S" if "weights" in row["t"] else "O"


def decision_rules(cal: list[Row], gate: float) -> dict[str, Callable[[Row], bool]]:
    from fp_registry.calibration import choose_threshold
    from fp_registry.fusion import spread_units

    def tau(keep: Callable[[Row], bool], score: Callable[[Row], float]) -> float:
        return choose_threshold([score(r) for r in cal if keep(r) and not r["derived"]],
                                [score(r) for r in cal if keep(r) and r["derived"]])

    null = [r["kappa"] for r in cal if not r["derived"]]
    kappa: Callable[[Row], float] = lambda r: r["kappa"]  # noqa: E731
    fused: Callable[[Row], float] = lambda r: max([spread_units(null, r["kappa"]) or 0.0]  # noqa: E731
                                                   + [v - gate for v in r["t"].values()])
    t_d, t_f = tau(lambda r: True, kappa), tau(lambda r: True, fused)
    t_s = tau(lambda r: stratum(r, gate) == "S", kappa)
    return {"D": lambda r: r["kappa"] >= t_d, "F": lambda r: fused(r) >= t_f,
            "OR": lambda r: stratum(r, gate) == "W" or r["kappa"] >= t_d,
            "ST": lambda r: {"W": True, "S": r["kappa"] >= t_s, "O": r["kappa"] >= t_d}[stratum(r, gate)]}


def bar(test: list[Row], match: Callable[[Row], bool]) -> tuple[bool, bool, bool]:
    """(bar met, a same-architecture false match, more than 5 % of the copies missed)."""
    fm = any(match(r) for r in test if not r["derived"] and r["family"] in SAME)
    pos = [r for r in test if r["derived"]]
    mi = sum(not match(r) for r in pos) / len(pos) > 0.05
    return not (fm or mi), fm, mi


def rules(paths: list[str]) -> dict[str, dict[str, Any]]:
    from fp_registry.fusion import WHITEBOX_GATE

    out: dict[str, dict[str, Any]] = {}
    for seed, entry in load_zoos(paths):
        cal = [r for r in entry["rows"] if r["split"] == "calibration"]
        test = [r for r in entry["rows"] if r["split"] == "test"]
        for name, match in decision_rules(cal, WHITEBOX_GATE).items():
            tally(out, name, seed, bar(test, match))
    return out


def load_zoos(paths: list[str]) -> list[tuple[str, Any]]:
    """The zoos of every file written by ``collect``, by seed."""
    zoos: dict[str, Any] = {}
    for p in paths:
        zoos.update(json.loads(Path(p).read_text()))
    return sorted(zoos.items(), key=lambda kv: int(kv[0]))


def tally(out: dict[str, dict[str, Any]], name: str, seed: str, result: tuple[bool, bool, bool]) -> None:
    """Adds one zoo's :func:`bar` result to the counts of rule ``name``."""
    met, fm, mi = result
    t = out.setdefault(name, {"zoos": 0, "met": 0, "false_match": 0, "misses": 0, "met_on": []})
    t["zoos"] += 1
    t["met"] += met
    t["false_match"] += fm
    t["misses"] += mi
    t["met_on"] += [int(seed)] if met else []


def main(collect: Callable[[str, int], dict[str, Any]] = collect_zoo,
         score: Callable[[list[str]], dict[str, dict[str, Any]]] = rules, doc: str = __doc__,
         commands: dict[str, Callable[[list[str]], None]] | None = None) -> None:
    """The command line; later checks pass their own ``collect``, ``score`` and extra ``commands`` on files."""
    commands = commands or {}
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("cmd", choices=("collect", "rules", *commands))
    ap.add_argument("paths", nargs="*", help="rules and the extra commands: files written by collect")
    ap.add_argument("-s", "--scenario", help="collect: the scenario")
    ap.add_argument("--seeds", help="collect: zoo seeds, comma-separated")
    ap.add_argument("-o", "--out", help="collect: the JSON file to extend")
    a = ap.parse_args()
    if a.cmd == "collect":
        out = Path(a.out)
        done = json.loads(out.read_text()) if out.exists() else {}
        for seed in (int(s) for s in a.seeds.split(",")):
            if str(seed) not in done:  # resumable: one zoo at a time, written atomically
                done[str(seed)] = collect(a.scenario, seed)
                write_atomic(out, done)
                print(seed, flush=True)
        return
    if not a.paths:
        ap.error(f"{a.cmd} needs the files written by collect")
    if a.cmd in commands:
        return commands[a.cmd](a.paths)
    counts = score(a.paths)
    print(json.dumps(counts, indent=1) if os.environ.get("JSON") else
          "\n".join(f"{k}: bar met {v['met']} / {v['zoos']}, zoos with a false match {v['false_match']}, "
                     f"with > 5 % misses {v['misses']}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
