"""Benchmark the MLflow path: checks per minute and registration-to-verdict-tag latency on a real local server.

    .venv/bin/python benchmarks/mlflow_checks.py --versions 40 [--json]

The server runs the ``mlflow.app`` trigger (the webhook trigger feeds the same queue and worker). A protected
owner (IPGuard) is registered, then N versions of a fine-tuned copy are created through the server as
fast as the client can; each one gets a verdict tag from the worker. The baseline, measured in the same run, is one
in-memory ``Fingerprint.verify`` of the same suspect, so the ratio shows what the registry path (download, pt2 load,
tag writes, queue) costs on top of the check itself.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _verdict_times(url: str, name: str, versions: list[str], created: dict[str, float],
                   timeout: float) -> dict[str, float]:
    import mlflow

    c, done = mlflow.MlflowClient(url), {}
    deadline = time.time() + timeout
    while len(done) < len(versions) and time.time() < deadline:
        for mv in c.search_model_versions(f"name = '{name}'"):
            if mv.version in created and mv.version not in done and "fp_registry.verdict" in mv.tags:
                done[mv.version] = time.time()
        time.sleep(0.1)
    return done


def run(n: int, root: Path) -> dict[str, Any]:
    import mlflow

    from fp_registry.integrations.mlflow_demo import register_model_version, wait_for_tag
    from fp_registry.integrations.mlflow_server import start_server, stop_server
    from fp_registry.scenarios import owner_inputs, train_owner
    from fp_registry.methods import make_owner
    from fp_registry.zoo import attacks
    from fp_registry.zoo.builder import make_context

    x = owner_inputs("digits-mlp")["data"]
    owner = train_owner("digits-mlp", seed=0)
    copy_ = attacks.finetune(owner, make_context(make_owner(owner, **owner_inputs("digits-mlp"))))
    proc, url = start_server(root, app_name="fp-registry", extra_env={"FP_REGISTRY_QUEUE": str(root / "q.db")})
    try:
        c = mlflow.MlflowClient(url)
        c.create_registered_model("owner", tags={"fp_registry.protect": "ipguard"})
        wait_for_tag(url, "owner", register_model_version(url, "owner", owner, x), "fp_registry.protected", 600)
        first = register_model_version(url, "suspect", copy_, x)
        source = c.get_model_version("suspect", first).source
        wait_for_tag(url, "suspect", first, "fp_registry.verdict", 300)  # warm: fingerprint cached, worker up
        created, t0 = {}, time.time()
        for _ in range(n):
            v = c.create_model_version("suspect", source=source, model_id=source.split("/")[-1],
                                       await_creation_for=0).version
            created[v] = time.time()
        done = _verdict_times(url, "suspect", list(created), created, timeout=60 + 20 * n)
        elapsed = max(done.values()) - t0 if done else float("nan")
        fp = _load_fp(url)
    finally:
        stop_server(proc)
    latencies = [done[v] - created[v] for v in done]
    bare = _bare_verify_s(fp, copy_)
    per_check = elapsed / max(len(done), 1)
    return {"versions": n, "verdicts": len(done), "checks_per_min": 60 * len(done) / elapsed,
            "latency_median_s": statistics.median(latencies), "latency_max_s": max(latencies),
            "seconds_per_check": per_check, "bare_verify_s": bare, "ratio_to_bare_verify": per_check / bare}


def _load_fp(url: str) -> Any:
    from fp_registry.integrations.mlflow_backend import MlflowBackend

    backend = MlflowBackend(f"mlflow+{url}")
    return backend.load(backend.entries()[0])


def _bare_verify_s(fp: Any, model: torch.nn.Module, repeats: int = 20) -> float:
    fp.verify(model)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fp.verify(model)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.versions, Path(tmp))
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print("| versions | verdicts | checks/min | median reg->tag s | max reg->tag s | s/check | bare verify s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {res['versions']} | {res['verdicts']} | {res['checks_per_min']:.1f} | {res['latency_median_s']:.2f} | "
          f"{res['latency_max_s']:.2f} | {res['seconds_per_check']:.3f} | {res['bare_verify_s']:.4f} | "
          f"{res['ratio_to_bare_verify']:.0f}x |")


if __name__ == "__main__":
    main()
