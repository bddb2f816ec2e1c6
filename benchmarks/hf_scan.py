"""Hub scan throughput on a local fake Hub: repos per minute and the share of time in download, load and verify.

Run: .venv/bin/python benchmarks/hf_scan.py --copies 8 --independent 8 --distractors 8 --workers 1 2
The Hub is the in-repo fake (tests/fakehub.py) on loopback, so download times are a lower bound for the real Hub.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def populate(n_copies: int, n_indep: int, n_distract: int, method: str) -> dict[str, list[str]]:
    """Protect the digits owner, then push fine-tuned/pruned copies, independent models and config-filtered repos."""
    from fp_registry import nets
    from fp_registry.fingerprints import fingerprint
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.integrations.hf_loader import push_reference
    from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
    from fp_registry.training import fit
    from fp_registry.zoo.attacks import prune

    sc = get_scenario("digits-mlp")
    owner = train_owner("digits-mlp", seed=0)
    negatives = [train_owner("digits-mlp", seed=1000 + i) for i in range(3)]
    fp = fingerprint(owner, method=method, negatives=negatives, progress=False, **owner_inputs("digits-mlp"))
    sha = push_reference(owner, "acme/owner")
    HfVault("hf://acme/vault").put(fp, f"hf://acme/owner@{sha}")
    x, y = sc.load_data().other
    groups: dict[str, list[str]] = {"copies": [], "independent": [], "distractors": []}
    for i in range(n_copies):
        model = (fit(copy.deepcopy(owner), "classification", x, y, epochs=2, lr=1e-3, seed=i) if i % 2 == 0
                 else prune(owner, None, ratio=0.1 + 0.4 * i / max(1, n_copies - 1)))  # 10-50 % of weights
        groups["copies"].append(f"pirate/copy-{i}")
        push_reference(model, groups["copies"][-1])
    ox, oy = sc.load_data().owner
    for i in range(n_indep):  # seeds 2000+ were never used for calibration
        model = fit(sc.build(2000 + i), "classification", ox, oy, epochs=8, lr=2e-3, seed=2000 + i, batch_size=64)
        groups["independent"].append(f"other/indep-{i}")
        push_reference(model, groups["independent"][-1])
    for i in range(n_distract):
        torch.manual_seed(i)
        groups["distractors"].append(f"other/regressor-{i}")
        push_reference(nets.build("mlp", {"in_features": 10, "hidden": [32], "out_features": 1}),
                       groups["distractors"][-1])
    return groups


def run(workers: int, executor: str, state: Path, groups: dict[str, list[str]]) -> dict[str, Any]:
    import os

    from huggingface_hub import constants

    from fp_registry.integrations.hf_scan import scan

    cache = str(state.parent / f"cache-{workers}-{executor}")  # a cold Hub cache for every run
    constants.HF_HUB_CACHE = os.environ["HF_HUB_CACHE"] = cache
    report = scan("hf://acme/vault", limit=10_000, state=state, workers=workers, executor=executor, record=False)
    rows = {r["repo"]: r["status"] for r in report.results}
    s = report.summary()
    return {"workers": workers, "executor": executor, "repos": s["repos"], "seconds": s["seconds"],
            "repos_per_min": s["repos_per_min"], "time_share": s["time_share"], "stage_seconds": s["stage_seconds"],
            "copies_flagged": sum(rows.get(r) == "match" for r in groups["copies"]),
            "independent_flagged": sum(rows.get(r) == "match" for r in groups["independent"]),
            "distractors_prefiltered": sum(rows.get(r) == "skipped" for r in groups["distractors"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--independent", type=int, default=8)
    ap.add_argument("--distractors", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--executor", default="thread", choices=["thread", "ray"])
    ap.add_argument("--method", default="ipguard")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from fakehub import running_hub

    with tempfile.TemporaryDirectory() as tmp, running_hub(Path(tmp) / "cache"):
        start = time.perf_counter()
        groups = populate(args.copies, args.independent, args.distractors, args.method)
        setup = time.perf_counter() - start
        runs = [run(w, args.executor, Path(tmp) / f"state-{w}.jsonl", groups) for w in args.workers]
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
              "method": args.method, "setup_seconds": round(setup, 1),
              "counts": {k: len(v) for k, v in groups.items()}, "runs": runs,
              "note": "fake Hub on loopback: download shares are lower bounds; each run starts with a cold cache"}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
