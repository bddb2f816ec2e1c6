"""Hub scanning job: list candidates, pre-filter on config/files, then download, load, verify; resumable."""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger("fp_registry.hf_scan")
EXPAND = ["sha", "createdAt", "siblings", "tags", "library_name"]


@dataclass(frozen=True)
class Candidate:
    """One repo at one commit, as the listing reported it."""

    repo: str
    sha: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class ScanContext:
    """Everything a worker (thread or Ray task) needs; plain data so it can travel to another process."""

    vault: str
    entries: tuple[dict[str, Any], ...]
    allow_pickle: bool = False
    env: dict[str, str] = field(default_factory=dict)
    whitebox: bool = True  #: add CKA / weight-Gram evidence where the fingerprint carries a white-box reference
    cluster: bool = False  #: keep each suspect's distance to DeepCore owners, for the batch clustering

    @property
    def entries_key(self) -> str:
        """Changes when an entry is added or replaced: a rescan then re-checks every repo."""
        import hashlib

        return hashlib.sha256(",".join(sorted(e["digest"] for e in self.entries)).encode()).hexdigest()[:16]


@dataclass
class RepoResult:
    """The outcome for one repo: match | clean | skipped | error, with per-stage seconds."""

    repo: str
    sha: str
    status: str
    reason: str = ""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"download": 0.0, "load": 0.0, "verify": 0.0})
    entries_key: str = ""  #: which set of protected entries this result was checked against


def list_candidates(search: str | None = None, author: str | None = None, filters: Iterable[str] = (),
                    limit: int | None = None) -> Iterator[Candidate]:
    """Paginated listing (huggingface_hub follows the Link header); newest first on the real Hub."""
    from .hf_loader import api

    found = api().list_models(search=search, author=author, filter=list(filters) or None, limit=limit,
                              sort="created_at", expand=EXPAND)
    for info in found:
        files = tuple(s.rfilename for s in (info.siblings or []))
        yield Candidate(info.id, str(info.sha or ""), files)


def io_spec(config: dict[str, Any]) -> dict[str, Any]:
    """Input size, output size and input kind a repo's ``config.json`` declares (None where it cannot tell)."""
    arch = config.get("fp_registry_arch")
    kw = config.get("config") if isinstance(config.get("config"), dict) else config
    if arch == "mlp":
        return {"in": kw.get("in_features"), "out": kw.get("out_features"), "kind": "float32"}
    if arch == "cnn":
        side, ch = kw.get("side", 8), kw.get("in_channels", 1)
        return {"in": ch * side * side, "out": kw.get("n_classes"), "kind": "float32"}
    if arch == "generator":
        return {"in": kw.get("latent_dim"), "out": kw.get("out_features"), "kind": "float32"}
    if "model_type" in config:  # a transformers model: token ids (int64, like fingerprints) in, num_labels out
        labels = config.get("id2label")
        return {"in": None, "out": len(labels) if isinstance(labels, dict) else config.get("num_labels"),
                "kind": "int64" if config.get("vocab_size") else None}
    return {"in": None, "out": None, "kind": None}


def fits(spec: dict[str, Any], io: dict[str, Any]) -> bool:
    """False only when the declared shapes rule the entry out; unknown shapes are kept (checked after download)."""
    n_in = math.prod(spec.get("input_shape") or [0])
    if io.get("kind") and spec.get("input_kind") and io["kind"] != spec["input_kind"]:
        return False
    if io.get("in") is not None and n_in and int(io["in"]) != n_in:
        return False
    return not (io.get("out") is not None and spec.get("output_dim") and int(io["out"]) != int(spec["output_dim"]))


_fp_cache: dict[tuple[str, str], Any] = {}
_fp_lock = threading.Lock()


def _fingerprint(ctx: ScanContext, entry: Any) -> Any:
    """Each fingerprint is fetched once per process (threads share it; each Ray worker loads its own)."""
    from .hf_backend import HfVault

    key = (ctx.vault, entry.digest)
    with _fp_lock:
        if key not in _fp_cache:
            _fp_cache[key] = HfVault(ctx.vault).load(entry)
        return _fp_cache[key]


def check_candidate(ctx: ScanContext, cand: Candidate) -> RepoResult:
    """Pre-filter, download, load, verify one repo; every failure becomes an ``error`` result, never an exception."""
    for key, value in ctx.env.items():
        os.environ.setdefault(key, value)  # Ray workers: the endpoint and token of the driver
    result = RepoResult(cand.repo, cand.sha, "skipped", entries_key=ctx.entries_key)
    try:
        _check(ctx, cand, result)
    except Exception as exc:  # one bad repo never stops the scan
        from fp_registry.errors import FpRegistryError

        msg = exc.one_line() if isinstance(exc, FpRegistryError) else f"{exc.__class__.__name__}: {exc}"
        result.status, result.reason = "error", msg.splitlines()[0][:300] if msg else exc.__class__.__name__
    return result


def _check(ctx: ScanContext, cand: Candidate, result: RepoResult) -> None:
    from fp_registry.records import RegistryEntry

    from .hf_loader import fetch, load_planned, plan_files, read_config, resolve

    start = time.perf_counter()
    sha, files = (cand.sha, list(cand.files)) if cand.sha and cand.files else resolve(cand.repo, cand.sha or None)
    result.sha = sha
    config = read_config(cand.repo, sha, files)
    plan = plan_files(files, config, ctx.allow_pickle)
    io = io_spec(config)
    entries = [RegistryEntry.from_dict(e) for e in ctx.entries if fits(e.get("meta", {}).get("spec", {}), io)]
    if not plan.files or not entries:
        result.timings["download"] = time.perf_counter() - start
        result.reason = plan.reason or f"no protected entry fits its config (input {io['in']}, output {io['out']})"
        return
    local = fetch(cand.repo, sha, plan.files)
    result.timings["download"] = time.perf_counter() - start
    start = time.perf_counter()
    model = load_planned(plan, local)
    result.timings["load"] = time.perf_counter() - start
    start = time.perf_counter()
    result.verdicts = [_verify(ctx, entry, model, f"hf://{cand.repo}@{sha}") for entry in entries]
    result.timings["verify"] = time.perf_counter() - start
    labels = {v["verdict"] for v in result.verdicts}
    result.status = next((s for s in ("match", "error", "clean") if s in labels), "skipped")
    result.reason = "; ".join(sorted({str(v["evidence"].get("reason") or v["evidence"].get("error"))
                                      for v in result.verdicts if v["verdict"] in ("error", "skipped")}))[:300]


def _verify(ctx: ScanContext, entry: Any, model: Any, suspect: str) -> dict[str, Any]:
    from fp_registry.errors import FpRegistryError, ShapeMismatchError
    from fp_registry.records import Verdict
    from fp_registry.whitebox_checks import add_whitebox_evidence

    from .scan_clusters import add_owner_distance

    try:
        fp = _fingerprint(ctx, entry)
        v = fp.verify(model)
        v = Verdict(**{**v.__dict__, "entry_id": entry.entry_id, "suspect": suspect})
        add_whitebox_evidence(v, fp, entry, model, {"whitebox": ctx.whitebox})  # the weights are downloaded anyway
        if ctx.cluster:
            add_owner_distance(v, fp, model, suspect)
    except ShapeMismatchError as exc:
        v = Verdict.skipped(exc.one_line(), entry.method, entry.entry_id, suspect)
    except FpRegistryError as exc:
        v = Verdict.error(exc.one_line(), entry.method, entry.entry_id, suspect)
    return {k: val for k, val in v.to_dict().items()}


def state_key(repo: str, sha: str, entries_key: str) -> str:
    return f"{repo}@{sha}#{entries_key}"


class ScanState:
    """Append-only JSONL of finished results keyed by repo@commit; errors are retried on the next run."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self.done: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash mid-write
                if row.get("status") != "error":
                    self.done[state_key(row["repo"], row["sha"], row.get("entries_key", ""))] = row

    def add(self, result: RepoResult) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:  # one line per result: an interrupted scan keeps what it finished
            f.write(json.dumps(asdict(result), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass
class ScanReport:
    """Results plus the summary people and machines read."""

    vault: str
    query: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    resumed: int = 0
    seconds: float = 0.0
    clusters: dict[str, dict[str, Any]] | None = None  #: per DeepCore entry, with ``cluster=True`` (scan_clusters)

    def summary(self) -> dict[str, Any]:
        from .scan_clusters import in_owner_cluster

        counts = {s: sum(r["status"] == s for r in self.results) for s in ("match", "clean", "skipped", "error")}
        if self.clusters is not None:
            counts["in_owner_cluster"] = len(in_owner_cluster(self.clusters))
        stage = {k: sum(r["timings"].get(k, 0.0) for r in self.results if not r.get("resumed")) for k in
                 ("download", "load", "verify")}
        total = sum(stage.values()) or 1.0
        fresh = len(self.results) - self.resumed
        return {**counts, "repos": len(self.results), "resumed": self.resumed, "seconds": round(self.seconds, 3),
                "repos_per_min": round(60 * fresh / self.seconds, 2) if self.seconds > 0 else None,
                "time_share": {k: round(v / total, 3) for k, v in stage.items()},
                "stage_seconds": {k: round(v, 3) for k, v in stage.items()}}

    def exit_code(self) -> int:
        """0 nothing found, 1 a match (or a repo in a DeepCore owner's cluster), 2 errors (and no match)."""
        s = self.summary()
        return 1 if s["match"] or s.get("in_owner_cluster") else 2 if s["error"] else 0

    def to_dict(self) -> dict[str, Any]:
        out = {"vault": self.vault, "query": self.query, "summary": self.summary(), "results": self.results}
        return out if self.clusters is None else {**out, "clusters": self.clusters}


def scan(vault: str, *, search: str | None = None, author: str | None = None, filters: Iterable[str] = (),
         limit: int | None = None, state: str | os.PathLike[str] | None = None, workers: int = 2,
         executor: str = "thread", allow_pickle: bool = False, record: bool = True, whitebox: bool = True,
         on_result: Callable[[dict[str, Any]], None] | None = None, cluster: bool = False,
         references: list[Any] = ()) -> ScanReport:
    """Run one scan; ``state`` makes it resumable, ``on_result`` sees each result as it finishes.

    ``cluster``: afterwards, sort the repos checked against each DeepCore entry into its owner's cluster or not
    (:mod:`.scan_clusters`), with ``references`` (known independent models) anchoring the other cluster.
    """
    from .hf_backend import HfVault, repo_of
    from .scan_executors import make_executor

    start = time.perf_counter()
    backend = HfVault(vault)
    entries = backend.entries()
    report = ScanReport(vault, {"search": search, "author": author, "filter": list(filters), "limit": limit})
    if not entries:
        report.results.append(asdict(RepoResult(vault, "", "error", "the vault holds no protected entry")))
        return report
    ctx = ScanContext(vault, tuple(e.to_dict() for e in entries), allow_pickle, _forwarded_env(), whitebox, cluster)
    # fail early (and once) on a broken vault, before any repo is touched
    fingerprints = {e.entry_id: _fingerprint(ctx, e) for e in entries}
    if cluster:  # and on a reference that fits no DeepCore entry
        from .scan_clusters import reference_distances

        ref_distances = reference_distances(entries, fingerprints, references)
    st, own = ScanState(state), {repo_of(e.model_uri) for e in entries}
    todo = _pending(list_candidates(search, author, filters, limit), st, own, ctx.entries_key, report, on_result)
    for result in make_executor(executor, workers, ctx.env).map_unordered(check_candidate, ctx, todo):
        st.add(result)
        row = asdict(result)
        report.results.append(row)
        if record and result.status == "match":
            _record(backend, result, entries)
        if on_result:
            on_result(row)
    if cluster:
        from .scan_clusters import cluster_scan

        report.clusters = cluster_scan(ref_distances, report.results)
    report.seconds = time.perf_counter() - start
    return report


def _pending(cands: Iterable[Candidate], st: ScanState, own: set[str], entries_key: str, report: ScanReport,
             on_result: Callable[[dict[str, Any]], None] | None) -> Iterator[Candidate]:
    """Candidates still to check; those done at the same commit against the same entries are reported as is."""
    for cand in cands:
        key = state_key(cand.repo, cand.sha, entries_key)
        if cand.repo in own:
            row = asdict(RepoResult(cand.repo, cand.sha, "skipped", "a protected model (in the vault)"))
        elif key in st.done:
            row = {**st.done[key], "resumed": True}
            report.resumed += 1
        else:
            yield cand
            continue
        report.results.append(row)
        if on_result:
            on_result(row)


def _record(backend: Any, result: RepoResult, entries: list[Any]) -> None:
    """Matches go to the vault (private) and to the ``verdict_ready`` hooks (log, alert)."""
    from fp_registry.errors import FpRegistryError
    from fp_registry.plugins import load_plugins, pm
    from fp_registry.records import UploadEvent, Verdict

    load_plugins()
    by_id = {e.entry_id: e for e in entries}
    event = UploadEvent("scan", result.repo, result.sha, f"hf://{result.repo}@{result.sha}")
    for v in (Verdict.from_dict(d) for d in result.verdicts):
        if v.is_match:
            try:
                backend.record_verdict(event.model_uri, v, by_id.get(v.entry_id))
            except FpRegistryError as exc:  # the match stays in the report; a vault hiccup must not end the scan
                log.warning("could not record %s in the vault: %s", event.model_uri, exc.one_line())
        pm.hook.verdict_ready(verdict=v, entry=by_id.get(v.entry_id), event=event, config={})


def _forwarded_env() -> dict[str, str]:
    keys = ("FP_REGISTRY_HF_ENDPOINT", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_CACHE", "HF_HUB_DISABLE_XET",
            "FP_REGISTRY_HOME")
    return {k: os.environ[k] for k in keys if os.environ.get(k)}


COLUMNS = ["repo", "sha", "status", "matched", "score", "reason"]


def table_rows(report: ScanReport) -> list[dict[str, Any]]:
    """One row per repo for people: the best-scoring verdict and why it was skipped or failed."""
    rows = []
    for r in report.results:
        best = max(r.get("verdicts") or [{}], key=lambda v: (v.get("verdict") == "match", v.get("score") or -1))
        rows.append({"repo": r["repo"], "sha": (r.get("sha") or "")[:10], "status": r["status"],
                     "matched": best.get("entry_id") if r["status"] == "match" else "", "score": best.get("score"),
                     "reason": (r.get("reason") or "")[:70] + (" (resumed)" if r.get("resumed") else "")})
    return rows
