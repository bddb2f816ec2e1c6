"""Benchmark: peak memory of verify and fingerprint, as ratios against bare baselines measured in the same run.

Usage: FP_REGISTRY_CACHE=... .venv/bin/python benchmarks/memory.py [--scenarios digits-mlp] [--methods ipguard]
       [--repeats 3] [--out DIR] [--json] [--glibc-default]

Every quantity is the peak resident memory (VmHWM) of its own fresh Python process, as an increment over that
process's resident memory right after it imported the same modules and ran a first op and optimizer (torch,
safetensors, fp_registry and its plugins); the peak is reset to the current RSS there (``/proc/self/clear_refs``),
so a transient of the imports cannot hide or inflate it. Per row and repeat:

- bare forward: load the suspect, load the queries verification sent to it, one batched forward (eval, no_grad);
- verify: load the suspect, ``load_fingerprint``, ``fp.verify(suspect)``;
- baseline (owner): load the owner and its data, one batched forward over that data (generators: latents);
- fingerprint: load the owner, its data and its cached zoo, ``fingerprint(owner, method, zoo=...)``.

Repeats run in separate processes, interleaved (baseline, then per method fingerprint, forward, verify); the table
shows medians, the JSON every repeat. Zoos come only from the model cache: a missing entry is an error.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from fp_registry import fingerprint, load_fingerprint, modelio
from fp_registry.errors import NotApplicableError
from fp_registry.evaluation.harness import _recorded_verify, _stack, parse_method_spec
from fp_registry.methods import get_method_class, make_owner
from fp_registry.modelio import load_path, save_model
from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
from fp_registry.zoo.builder import build_zoo

Runner = Callable[[dict[str, Any]], dict[str, Any]]


# ---- measuring inside one process ------------------------------------------------------------------------------

def _status_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        pairs = [line.split(":") for line in f if line.startswith(("VmRSS:", "VmHWM:"))]
    return {key: int(value.split()[0]) for key, value in pairs}


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel or sandbox refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Probe:
    """Peak-RSS increments over the resident memory at creation, at named marks."""

    def __init__(self) -> None:
        gc.collect()
        self.reset = _reset_peak()
        # without a reset the peak so far may exceed the current RSS: then increments are upper bounds
        self.base_kib = _status_kib()["VmRSS"]
        self.modules = set(sys.modules)
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = (_status_kib()["VmHWM"] - self.base_kib) / 1024

    def result(self) -> dict[str, Any]:
        self.mark("peak")
        new = set(sys.modules) - self.modules  # lazy imports are part of the step's cost: say which they were
        return {"status": "ok", "peak_mb": self.marks["peak"], "marks": self.marks, "base_mb": self.base_kib / 1024,
                "hwm_reset": self.reset, "new_modules": len(new),
                "new_packages": sorted({m.split(".")[0] for m in new})}


def import_shared() -> None:
    """What every measuring process does before its baseline reading (besides this module's imports)."""
    from fp_registry.plugins import methods

    methods()  # imports the methods' modules
    warm = torch.nn.Linear(4, 4)
    with torch.no_grad():  # the first torch op of a process sets up ~5 MB of runtime state, whatever runs after
        warm(torch.ones(2, 4))
    # the first optimizer of a process imports torch's compile stack (torch._dynamo, sympy: ~70 MB), a cost of
    # torch that any training process has paid already, not of a method (README, memory section)
    torch.optim.SGD(warm.parameters(), lr=0.1)
    try:  # the text architectures build transformers models: ~80 MB of imports that running such a model pays
        import transformers
    except ImportError:  # the optional [hf] extra: the text scenarios need it anyway
        return
    for name in ("BertForSequenceClassification", "GPT2LMHeadModel"):
        getattr(transformers, name)  # transformers imports a model's modules on first access


class NotCached(ValueError):
    """A zoo member missing from the cache. A ValueError, so ``build_zoo`` skips it as it skips an attack that fails
    (a permutation of a transformer is never cached, for that reason); :func:`scenario_cases` reports every skip."""


def cache_only() -> None:
    """Make ``cached_model`` fail instead of training: this benchmark measures, it never builds a zoo."""
    original = modelio.cached_model
    if getattr(original, "cache_only", False):
        return

    def load(key: str, make: Callable[[], Any]) -> Any:
        def refuse() -> Any:
            raise NotCached(f"{key} is not in the model cache (set FP_REGISTRY_CACHE; this benchmark never trains)")
        return original(key, refuse)

    load.cache_only = True  # type: ignore[attr-defined]
    modelio.cached_model = load


def _inputs(spec: dict[str, Any], key: str = "inputs") -> dict[str, Any]:
    tensors = load_file(spec[key])
    shape = spec.get("input_shape")
    return {"task": spec["task"], "data": tensors["data"], "labels": tensors.get("labels"),
            "input_shape": tuple(shape) if shape else None}


def _eval_forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        model(x)


def _task_forward(spec: dict[str, Any]) -> dict[str, Any]:
    if not Path(spec["queries"]).exists():
        return {"status": "no queries"}  # the method sent the suspect no inputs (nothing to forward)
    probe = Probe()
    model, x = load_path(spec["suspect"]), load_file(spec["queries"])["x"]
    probe.mark("loaded")
    _eval_forward(model, x)
    return probe.result()


def _task_verify(spec: dict[str, Any]) -> dict[str, Any]:
    probe = Probe()
    model, fp = load_path(spec["suspect"]), load_fingerprint(spec["fingerprint"])
    probe.mark("loaded")
    fp.verify(model)
    return probe.result()


def _task_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    probe = Probe()
    model, kw = load_path(spec["owner"]), _inputs(spec)
    probe.mark("loaded")
    if kw["task"] == "generation":  # a generator's inputs are latents, one per data row
        x = make_owner(model, **kw).sample_inputs(len(kw["data"]), torch.Generator().manual_seed(0))
    else:
        x = kw["data"]
    _eval_forward(model, x)
    return probe.result()


def _task_fingerprint(spec: dict[str, Any]) -> dict[str, Any]:
    probe = Probe()
    model, kw = load_path(spec["owner"]), _inputs(spec)
    zoo, negatives = _zoo(model, kw, spec), [load_path(p) for p in spec.get("negatives", [])]
    probe.mark("zoo")
    try:
        fp = fingerprint(model, method=spec["method"], zoo=zoo, negatives=negatives or None, seed=spec["seed"],
                         progress=False, **kw, **spec.get("settings", {}))
    except NotApplicableError as exc:
        return {"status": "not applicable", "reason": str(exc)}
    result = probe.result()
    if spec.get("save"):  # after the reading: writing the artifact is the next step's input, not its cost
        _save_for_verify(fp, load_path(spec["suspect"]), spec)
    return result


def _zoo(model: torch.nn.Module, kw: dict[str, Any], spec: dict[str, Any]) -> Any:
    """The scenario's cached zoo with the train replicas the method would build itself (as ``evaluate`` does)."""
    if not spec.get("zoo_scenario"):
        return None
    cache_only()
    reps = get_method_class(spec["method"]).zoo_train_reps
    alt = _inputs(spec, "alt_inputs")  # from a file: the scenario's dataset loader would import sklearn and pandas
    return build_zoo(make_owner(model, **kw), seed=spec["seed"], progress=False, name=spec["zoo_scenario"],
                     alt_data=(alt["data"], alt["labels"]), train_reps=reps)


def _save_for_verify(fp: Any, suspect: torch.nn.Module, spec: dict[str, Any]) -> None:
    """Write the artifact, and the exact queries ``fp.verify(suspect)`` sends, for the forward and verify steps."""
    fp.save(spec["fingerprint"])
    _, seen = _recorded_verify(fp, suspect)
    if seen:
        save_file({"x": _stack(seen).contiguous()}, spec["queries"])


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "forward": _task_forward, "verify": _task_verify, "baseline": _task_baseline, "fingerprint": _task_fingerprint}


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process (the child side of :func:`run_child`)."""
    torch.set_num_threads(1)
    import_shared()
    return TASKS[spec["kind"]](spec)


#: glibc's initial mmap threshold, held fixed. Why: by default glibc raises it after a large block is freed, so
#: later large blocks come from the heap and stay there when freed; peaks then depend on allocation order: the
#: digits-cnn zoo step took 92-168 MB in six identical runs, 33.0 MB (+- 0.1) in three with the threshold fixed.
#: Fixed, a peak is what a step holds at once. ``--glibc-default`` measures without it.
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def run_child(spec: dict[str, Any], glibc_default: bool = False) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its last stdout line is the JSON result (no pickling)."""
    env = {k: v for k, v in os.environ.items() if k not in FIXED_MMAP}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env if glibc_default else {**env, **FIXED_MMAP})
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['kind']} child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the run: cases, interleaved repeats, medians --------------------------------------------------------------

@dataclass
class Case:
    """One row: an owner (saved model and data), a method, and the files its steps hand to each other."""

    scenario: str
    method: str
    owner: str
    inputs: str
    task: str
    suspect: str
    workdir: str
    input_shape: list[int] | None = None
    zoo_scenario: str | None = None  #: fingerprint with this scenario's cached zoo, else with ``negatives``
    negatives: list[str] = field(default_factory=list)
    alt_inputs: str | None = None  #: the zoo's "other" data (safetensors)
    suspect_name: str = ""
    zoo_note: dict[str, Any] = field(default_factory=dict)  #: zoo size and the members it skipped
    seed: int = 0

    def spec(self, kind: str, **extra: Any) -> dict[str, Any]:
        method, settings = parse_method_spec(self.method)
        work = Path(self.workdir)
        return {**asdict(self), "kind": kind, "method": method, "settings": settings,
                "fingerprint": str(work / "fingerprint"), "queries": str(work / "queries.safetensors"), **extra}


def save_inputs(path: Path, data: Any, labels: Any = None) -> str:
    """The owner's data (and labels) as safetensors, for the measuring processes."""
    tensors = {"data": torch.as_tensor(data).contiguous()}
    if labels is not None:
        tensors["labels"] = torch.as_tensor(labels).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return str(path)


def scenario_cases(scenario: str, methods: list[str], tmp: Path, seed: int = 0) -> tuple[list[Case], list[dict]]:
    """Cases of ``scenario`` for the methods that apply, and "not applicable" rows for the others.

    The suspect is the first derived model of the zoo's test split (an unseen copy); the zoo is loaded here once
    with the most train replicas any method needs, which fails early when the cache lacks a member.
    """
    cache_only()
    model, kw = train_owner(scenario, seed), owner_inputs(scenario)
    owner = make_owner(model, **kw)
    keep, skipped, reps = _applicable(owner, methods, scenario)
    if not keep:
        return [], skipped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo = build_zoo(owner, seed=seed, progress=False, name=scenario,
                        alt_data=get_scenario(scenario).load_data().other, train_reps=reps)
    zoo_note = {"zoo_train_reps": reps, "zoo_members": len(zoo.members),
                "zoo_skipped": [str(w.message)[:200] for w in caught if str(w.message).startswith("zoo: skipped")]}
    suspect = next(z for z in zoo.members if z.split == "test" and z.derived)
    root = tmp / scenario
    save_model(model, root / "owner")
    save_model(suspect.model, root / "suspect")
    inputs = save_inputs(root / "inputs.safetensors", kw["data"], kw["labels"])
    alt = save_inputs(root / "alt.safetensors", *get_scenario(scenario).load_data().other)
    shape = list(kw["input_shape"]) if kw.get("input_shape") else None
    cases = [Case(scenario, m, str(root / "owner"), inputs, owner.task, str(root / "suspect"),
                  str(root / m.replace(":", "_")), shape, scenario, alt_inputs=alt, suspect_name=suspect.name,
                  zoo_note=zoo_note, seed=seed) for m in keep]
    return cases, skipped


def _applicable(owner: Any, methods: list[str], scenario: str) -> tuple[list[str], list[dict[str, Any]], int]:
    """Methods that apply, "not applicable" rows for the others, and the most train replicas one builds."""
    keep, skipped, reps = [], [], 1
    for m in methods:
        name, settings = parse_method_spec(m)
        try:
            get_method_class(name)(**settings).check_owner(owner)
        except NotApplicableError as exc:
            skipped.append({"scenario": scenario, "method": m, "status": "not applicable", "reason": str(exc)})
            continue
        keep.append(m)
        reps = max(reps, get_method_class(name).zoo_train_reps)
    return keep, skipped, reps


def measure(cases: list[Case], repeats: int = 3, runner: Runner = run_child) -> list[dict[str, Any]]:
    """Rows for cases sharing one owner: every repeat runs the baseline, then per case fingerprint, forward, verify.

    Why interleaved: a drift in the machine's state (page cache, load) then touches baselines and measurements
    alike. The first fingerprint of a case writes the artifact and queries the later steps read.
    """
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {c.method: {} for c in cases}
    baseline: list[dict[str, Any]] = []
    for r in range(repeats):
        baseline.append(runner(cases[0].spec("baseline")))
        for c in cases:
            got = samples[c.method]
            got.setdefault("fingerprint", []).append(runner(c.spec("fingerprint", save=r == 0)))
            if got["fingerprint"][-1]["status"] != "ok":
                continue
            for kind in ("forward", "verify"):
                got.setdefault(kind, []).append(runner(c.spec(kind)))
    return [summarise(c, samples[c.method], baseline) for c in cases]


def _stats(results: list[dict[str, Any]] | None, mark: str = "peak") -> tuple[float | None, float | None]:
    """Median and spread (max - min) of the ``mark`` readings that succeeded."""
    ok = [r["marks"][mark] for r in results or [] if r.get("status") == "ok"]
    return (statistics.median(ok), max(ok) - min(ok)) if ok else (None, None)


def ratio(measured: float | None, baseline: float | None) -> float | None:
    """measured / baseline, or None when either is missing or the baseline is not positive."""
    return measured / baseline if measured is not None and baseline is not None and baseline > 0 else None


def summarise(case: Case, got: dict[str, list[dict[str, Any]]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats, the two ratios, the spread (max - min) of every quantity and the raw readings."""
    first = got["fingerprint"][0]
    if first["status"] != "ok":
        return {"scenario": case.scenario, "method": case.method, "status": first["status"],
                "reason": first.get("reason", "")}
    raw = {"baseline": baseline, **got}
    med = {k: _stats(v)[0] for k, v in raw.items()}
    return {"scenario": case.scenario, "method": case.method, "status": "ok", "suspect": case.suspect_name,
            **case.zoo_note, "forward_mb": med.get("forward"), "verify_mb": med.get("verify"),
            "verify_forward_ratio": ratio(med.get("verify"), med.get("forward")),
            "fingerprint_mb": med["fingerprint"], "zoo_mb": _stats(got["fingerprint"], "zoo")[0],
            "baseline_mb": med["baseline"], "fingerprint_baseline_ratio": ratio(med["fingerprint"], med["baseline"]),
            "spread_mb": {k: _stats(v)[1] for k, v in raw.items()}, "repeats": raw}


# ---- report ----------------------------------------------------------------------------------------------------

HEADER = ("| scenario | method | bare forward peak MB | verify peak MB | verify/forward | fingerprint peak MB | "
          "of which zoo MB | baseline MB | fingerprint/baseline | max spread MB |\n" + "|---" * 10 + "|")


def _f(v: Any, d: int = 2) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def row(r: dict[str, Any]) -> str:
    if r.get("status") != "ok":
        return f"| {r['scenario']} | {r['method']} | {r.get('status')} |" + " |" * 7
    spread = max((s for s in r["spread_mb"].values() if s is not None), default=None)
    return (f"| {r['scenario']} | {r['method']} | {_f(r['forward_mb'])} | {_f(r['verify_mb'])} | "
            f"{_f(r['verify_forward_ratio'], 1)} | {_f(r['fingerprint_mb'], 1)} | {_f(r['zoo_mb'], 1)} | "
            f"{_f(r['baseline_mb'])} | {_f(r['fingerprint_baseline_ratio'], 1)} | {_f(spread)} |")


def run(scenarios: list[str], methods: list[str], repeats: int, runner: Runner, seed: int = 0) -> list[dict]:
    """Rows of every scenario; its files (owner, suspect, artifacts, queries: secrets) are deleted afterwards."""
    from run import _load

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fp-memory-") as tmp:
        for scenario in scenarios:
            cases, skipped = scenario_cases(scenario, methods, Path(tmp), seed)
            rows += (measure(cases, repeats, runner) if cases else []) + skipped
            skips = len(cases[0].zoo_note["zoo_skipped"]) if cases else 0
            print(f"{scenario}: done ({skips} zoo members skipped), load {_load()}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="digits-mlp,digits-cnn,diabetes-fcn,digits-gen")
    p.add_argument("--methods", default="ipguard,metav,deepcore", help="those that do not apply are listed as such")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per quantity (median reported)")
    p.add_argument("--out", default="benchmarks/out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print memory.json instead of the table")
    p.add_argument("--glibc-default", action="store_true", help="let glibc move its mmap threshold (noisy peaks)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement, JSON spec
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_task(json.loads(args.child))))
        return 0
    from run import _commit, _load

    torch.set_num_threads(1)
    load_start = _load()
    rows = run([s for s in args.scenarios.split(",") if s], [m for m in args.methods.split(",") if m], args.repeats,
               functools.partial(run_child, glibc_default=args.glibc_default), args.seed)
    allocator = "glibc default" if args.glibc_default else " ".join(f"{k}={v}" for k, v in FIXED_MMAP.items())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    context = (f"Measured {stamp}, `{' '.join(sys.argv)}`, commit {_commit()}, {args.repeats} repeats, {allocator}, "
               f"load average at start {load_start} / end {_load()} (1/5/15 min, 2 cores)")
    table, out = "\n".join([HEADER] + [row(r) for r in rows]), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps({"context": context, "rows": rows}, indent=1))
    (out / "memory.md").write_text(f"{context}\n\n{table}\n")
    print((out / "memory.json").read_text() if args.json else f"{context}\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
