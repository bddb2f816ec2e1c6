"""Evaluate methods on the test split of a zoo: fingerprint once per method, score every unseen suspect."""
from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import NotApplicableError, UsageError
from ..methods import get_method_class, make_owner
from ..zoo.recipes import SAME_ARCH_FAMILIES
from ..zoo.spec import Zoo
from . import metrics
from .fused import fused_rows


TIMING_REPEATS = 5


def _stack(queries: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([q.reshape(len(q), *queries[0].shape[1:]) for q in queries])


def _timed_forward(model: nn.Module, x: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            start = time.perf_counter()
            model(x)
            return time.perf_counter() - start
    finally:
        model.train(was_training)


def _timed_verify(fp: Any, model: nn.Module) -> float:
    start = time.perf_counter()
    fp.verify(model)
    return time.perf_counter() - start


def time_verification(fp: Any, model: nn.Module, queries: list[torch.Tensor],
                      repeats: int = TIMING_REPEATS) -> tuple[float, float]:
    """Median seconds of ``fp.verify(model)`` (what a user calls) and of one bare batched forward of its queries.

    Why interleaved and median: both are timed in the same loop under the same load, and neither side gets
    a cold first call or a best-case outlier that the other does not.
    """
    if not queries:
        return statistics.median(_timed_verify(fp, model) for _ in range(repeats)), float("nan")
    x = _stack(queries)
    verify, forward = [], []
    for _ in range(repeats):
        verify.append(_timed_verify(fp, model))
        forward.append(_timed_forward(model, x))
    return statistics.median(verify), statistics.median(forward)


def _recorded_verify(fp: Any, model: nn.Module) -> tuple[Any, list[torch.Tensor]]:
    """Verify while a forward pre-hook records the inputs the method sent (the module itself is untouched)."""
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
    try:
        verdict = fp.verify(model)
    finally:
        hook.remove()
    return verdict, seen


def score_split(fp: Any, zoo: Zoo, split: str = "test") -> list[dict[str, Any]]:
    """One row per suspect of ``split``: score, decision, queries, verify seconds and bare-forward seconds.

    The recorded call (with its input-copying hook) gives the score and the queries; the times come from
    separate, hook-free calls of ``fp.verify``.
    """
    rows = []
    for z in (m for m in zoo.members if m.split == split):
        verdict, seen = _recorded_verify(fp, z.model)
        seconds, forward = time_verification(fp, z.model, seen)
        rows.append({"name": z.name, "family": z.family, "derived": z.derived, "score": verdict.score,
                     "is_match": verdict.is_match, "n_queries": verdict.n_queries, "seconds": seconds,
                     "forward_seconds": forward, "utility": z.utility})
    return rows


def evaluate_method(owner_model: nn.Module, owner_kwargs: dict[str, Any], method: str, zoo: Zoo,
                    seed: int = 0, progress: bool = False, train_reps: int | None = None,
                    whitebox: bool = False) -> dict[str, Any]:
    """Fingerprint with ``method`` (zoo train/calibration splits only) and measure it on the test split.

    ``train_reps``: train replicas the method may learn from (default: as many as it would build for itself).
    ``whitebox``: also score the same suspects with the fused black-box + white-box score
    (:mod:`fp_registry.fusion`), returned under ``"fused"`` as a result of its own named ``METHOD+whitebox``.
    """
    from ..fingerprints import fingerprint

    name, settings = parse_method_spec(method)
    # a shared zoo may have more train replicas than this method asks for; it gets the zoo it would build itself,
    # so a method's numbers do not depend on which other methods share the run
    zoo = zoo.replicas(get_method_class(name).zoo_train_reps if train_reps is None else train_reps)
    start = time.perf_counter()
    try:
        fp = fingerprint(owner_model, method=name, zoo=zoo, seed=seed, progress=progress, whitebox=whitebox,
                         **owner_kwargs, **settings)
    except NotApplicableError as exc:
        return {"method": method, "status": "not applicable", "reason": str(exc)}
    fp_seconds = time.perf_counter() - start
    rows = score_split(fp, zoo, "test")
    result = _result(method, fp.threshold, fp_seconds, peak_rss_mb(), rows, _calibration_scores(fp.calibration))
    fused = fused_rows(fp, owner_model, zoo, rows) if whitebox else None
    if fused is not None:
        cal = fp.meta["whitebox"]["fused"]
        result["fused"] = _result(method + "+whitebox", cal["threshold"], fp_seconds, peak_rss_mb(), fused,
                                  _calibration_scores(cal), by_decision=cal.get("rule") == "strata")
        result["fused"] |= {"decision": cal.get("rule", "max"), "stratum_threshold": cal.get("stratum_threshold"),
                            "stratum_tail": cal.get("stratum_tail")}
    return result


def _calibration_scores(cal: Any) -> dict[str, list[float]] | None:
    """The calibration split's scores behind a row's threshold. Why in the report: a threshold rule can then be
    studied (or a failure explained) from the report alone, without refitting the fingerprint."""
    if cal is None:
        return None
    scores = cal if isinstance(cal, dict) else cal.to_dict()
    return {key: [float(s) for s in scores[key]] for key in ("negative_scores", "positive_scores")}


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"textprobe:confer=200:n_points=128"`` -> ``("textprobe", {"confer": 200, "n_points": 128})``.

    Why a spec string: one report can then put a method's default beside its variants, row by row.
    """
    name, *pairs = spec.split(":")
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"method setting {pair!r} in {spec!r} is not key=value",
                             "write variants as name:key=value[:key=value], e.g. textprobe:confer=200")
        settings[key] = _setting_value(raw)
    return name, settings


def _setting_value(raw: str) -> Any:
    """As ``fpreg fingerprint --set``: a JSON value (200, 0.9, true) or else the plain string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (torch tensors included, unlike tracemalloc)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _result(method: str, tau: float, fp_seconds: float, peak: float, rows: list[dict[str, Any]],
            calibration: dict[str, list[float]] | None = None, by_decision: bool = False) -> dict[str, Any]:
    """A report row. ``by_decision``: rates at the threshold come from each suspect's ``is_match``, for a rule
    that is not ``score >= tau`` (ranking metrics such as ROC-AUC still come from the scores)."""
    pos = [r["score"] for r in rows if r["derived"]]
    neg = [r["score"] for r in rows if not r["derived"]]
    same = [r for r in rows if not r["derived"] and r["family"] in SAME_ARCH_FAMILIES]
    overall, families = metrics.summary(pos, neg, tau), metrics.per_family(rows, tau)
    same_fpr = 1 - metrics.uniqueness([r["score"] for r in same], tau) if same else None
    if by_decision:
        decided = metrics.at_decisions(rows)
        overall |= decided.pop("overall")
        for fam, rates in decided.items():
            families[fam] |= rates
        same_fpr = sum(bool(r["is_match"]) for r in same) / len(same) if same else None
    verify = sum(r["seconds"] for r in rows) / max(1, len(rows))
    forward = sum(r["forward_seconds"] for r in rows) / max(1, len(rows))
    return {"method": method, "status": "ok", "threshold": tau, "overall": overall, "families": families,
            "same_arch_fpr": same_fpr,
            "queries": max((r["n_queries"] for r in rows), default=0), "fingerprint_seconds": fp_seconds,
            "verify_seconds": verify, "forward_seconds": forward,
            "verify_forward_ratio": verify / forward if forward > 0 else None,
            "peak_rss_mb": peak, "calibration": calibration, "suspects": rows}


def evaluate_owner(model: nn.Module, owner_kwargs: dict[str, Any], methods: list[str], out_dir: str | Path | None,
                   *, name: str = "owner", seed: int = 0, alt_data: Any = None, progress: bool = True,
                   sizes: dict[str, Any] | None = None, holdout_families: tuple[str, ...] = (),
                   train_reps: int | None = None, whitebox: bool = False,
                   calibration_reps: int = 0) -> dict[str, Any]:
    """Build the zoo of ``model`` once, evaluate every method, write report.json / report.md / plots.

    ``train_reps`` builds the train split that many times (fresh seeds), for methods that learn from it (MetaV);
    by default, as many as the most demanding method would build for itself (its ``zoo_train_reps``).
    ``calibration_reps`` builds that many more replicas of the train recipes and moves them to the calibration
    split (:meth:`~fp_registry.zoo.spec.Zoo.calibrate_on_replicas`): more lineages for thresholds only.
    ``whitebox`` adds a ``METHOD+whitebox`` row (fused score) after each method whose owner has weights.
    """
    from ..zoo.builder import build_zoo, make_context, utility

    kw = {k: v for k, v in owner_kwargs.items() if k in ("task", "data", "labels", "input_shape")}
    owner = make_owner(model, kw.get("task", "classification"), kw.get("data"), kw.get("labels"),
                       kw.get("input_shape"))
    reps = default_train_reps(methods) if train_reps is None else train_reps
    tail = default_tail_lineages(methods, owner) if whitebox else 0  # only the fused decision uses them
    start = time.perf_counter()
    zoo = build_zoo(owner, seed=seed, progress=progress, sizes=sizes, holdout_families=holdout_families,
                    name=name, alt_data=alt_data, train_reps=reps + calibration_reps, tail_lineages=tail)
    zoo = zoo.calibrate_on_replicas(reps)
    zoo_seconds = time.perf_counter() - start
    results = []
    for m in methods:
        result = evaluate_method(model, kw, m, zoo, seed, train_reps=train_reps, whitebox=whitebox)
        results += [result] + ([result.pop("fused")] if "fused" in result else [])
    report = {"scenario": name, "task": owner.task, "seed": seed, "zoo_seconds": zoo_seconds,
              "owner_utility": utility(model, make_context(owner, alt_data)),
              "zoo": {s: {"positives": len(zoo.split(s).positives), "negatives": len(zoo.split(s).negatives)}
                      for s in ("train", "calibration", "test")}, "tail_lineages": len(zoo.tail(tail)),
              "holdout_families": list(holdout_families), "train_reps": reps, "calibration_reps": calibration_reps,
              "environment": environment(), "methods": results}
    if out_dir is not None:
        from .report import write_report

        write_report(report, Path(out_dir))
    return metrics.clean(report)


def environment() -> dict[str, Any]:
    """What a rerun needs besides the seeds to rebuild the same zoo: trained weights also depend on torch's version
    and thread count (CPU kernels split float sums by thread; the text-gpt owner of seed 0 trained with 1 and with
    2 threads differs by up to 0.005 per weight, and so does every model derived from it)."""
    import platform

    from .. import __version__

    return {"fp_registry": __version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}


def default_train_reps(methods: list[str]) -> int:
    """Train replicas a shared zoo needs: the most any of ``methods`` would build for itself."""
    return max((get_method_class(parse_method_spec(m)[0]).zoo_train_reps for m in methods), default=1)


def default_tail_lineages(methods: list[str], owner: Any) -> int:
    """Tail lineages a shared zoo needs: the most any of ``methods`` asks for (each method takes its own first n)."""
    counts = []
    for spec in methods:
        name, settings = parse_method_spec(spec)
        counts.append(get_method_class(name)(**settings).tail_lineages(owner))
    return max(counts, default=0)


def evaluate(scenario: str, methods: list[str], out_dir: str | Path | None = None, seed: int = 0,
             progress: bool = True, **options: Any) -> dict[str, Any]:
    """Train (or load) the scenario's owner, then :func:`evaluate_owner` with its disjoint "other" data."""
    from ..scenarios import get_scenario, owner_inputs, train_owner

    sc = get_scenario(scenario)
    return evaluate_owner(train_owner(scenario, seed), owner_inputs(scenario), methods, out_dir, name=scenario,
                          seed=seed, alt_data=sc.load_data().other, progress=progress, **options)
