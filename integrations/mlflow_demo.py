"""``fpreg demo``: a local MLflow server, a protected owner, five suspects registered, verdict tags read back."""
from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

OWNER = "digits-owner"
TAG = "fp_registry."


def register_model_version(url: str, name: str, model: torch.nn.Module, example: torch.Tensor) -> str:
    """Log ``model`` as a pt2 program (batch dimension dynamic: two example rows) and register it; the version."""
    import mlflow
    import mlflow.pytorch

    from fp_registry.modelio import EXPORT_LOCK

    mlflow.set_tracking_uri(url)
    # pip_requirements skips MLflow's requirement inference, a ~10 s subprocess per model; the lock keeps this
    # export apart from an in-process worker loading programs (see EXPORT_LOCK)
    with EXPORT_LOCK:
        info = mlflow.pytorch.log_model(model.eval(), name="model", input_example=example[:2].numpy(),
                                        registered_model_name=name, pip_requirements=["torch"])
    return str(info.registered_model_version)


def wait_for_tag(url: str, name: str, version: str, key: str, timeout: float = 60.0) -> dict[str, str]:
    """The version's tags once ``key`` is set; AssertionError after ``timeout`` seconds."""
    import mlflow

    c = mlflow.MlflowClient(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        tags = dict(c.get_model_version(name, version).tags)
        if key in tags:
            return tags
        time.sleep(0.3)
    raise AssertionError(f"{name}/{version} got no {key} tag in {timeout:.0f} s")


@dataclass
class DemoSuspect:
    name: str
    lineage: str
    expected: str  # "derived" or "independent"
    make: Callable[[], torch.nn.Module]


def suspects(owner: torch.nn.Module) -> list[DemoSuspect]:
    """The five suspects of the demo, built with the zoo's own attacks (owner data for derived copies)."""
    from fp_registry.methods import make_owner
    from fp_registry.scenarios import owner_inputs, train_owner
    from fp_registry.zoo import attacks
    from fp_registry.zoo.builder import make_context

    ctx = make_context(make_owner(owner, **owner_inputs("digits-mlp")))
    ctx.seed = 21
    return [
        DemoSuspect("suspect-finetuned", "finetune(all, other data, lr=1e-3, 5 epochs)", "derived",
                    lambda: attacks.finetune(copy.deepcopy(owner), ctx, data="other")),
        DemoSuspect("suspect-pruned-finetuned", "prune(0.5) then finetune", "derived",
                    lambda: attacks.prune_finetune(copy.deepcopy(owner), ctx, ratio=0.5)),
        DemoSuspect("suspect-distilled", "distill(same architecture, soft labels)", "derived",
                    lambda: attacks.distill(copy.deepcopy(owner), ctx)),
        DemoSuspect("independent-a", "same architecture, own training (seed 4)", "independent",
                    lambda: train_owner("digits-mlp", seed=4)),
        DemoSuspect("independent-b", "same architecture, own training (seed 5)", "independent",
                    lambda: train_owner("digits-mlp", seed=5)),
    ]


def run_demo(root: Path, method: str = "ipguard", keep_server: bool = False,
             echo: Callable[[str], Any] = print) -> tuple[list[dict[str, Any]], str, int]:
    """The whole flow on the embedded default; returns the table rows, the server URL and its process id."""
    from fp_registry.scenarios import owner_inputs, train_owner

    from .mlflow_server import start_server, stop_server

    t0 = time.time()
    echo = _timed(echo, t0)
    shutil.rmtree(root, ignore_errors=True)  # the demo's server state is disposable: a fresh registry each run
    echo(f"[1/4] starting mlflow server (sqlite under {root}) with the fp-registry app plugin ...")
    proc, url = start_server(root, app_name="fp-registry", extra_env={"FP_REGISTRY_QUEUE": str(root / "queue.db")})
    try:
        example = owner_inputs("digits-mlp")["data"]
        rows = _register_and_wait(url, method, train_owner("digits-mlp", seed=0), example, echo)
    finally:
        if not keep_server:
            stop_server(proc)
    return rows, url, proc.pid


def _timed(echo: Callable[[str], Any], t0: float) -> Callable[[str], Any]:
    return lambda msg: echo(f"{time.time() - t0:6.1f}s  {msg}")


def _register_and_wait(url: str, method: str, owner: torch.nn.Module, example: torch.Tensor,
                       echo: Callable[[str], Any]) -> list[dict[str, Any]]:
    import mlflow

    c = mlflow.MlflowClient(url)
    echo(f"[2/4] registering {OWNER} (tagged {TAG}protect={method}); the server's worker fingerprints it ...")
    c.create_registered_model(OWNER, tags={TAG + "protect": method})
    version = register_model_version(url, OWNER, owner, example)
    wait_for_tag(url, OWNER, version, TAG + "protected", timeout=600)
    plan = suspects(owner)
    registered = []
    for i, s in enumerate(plan, 1):
        echo(f"[3/4] ({i}/{len(plan)}) building and registering {s.name}: {s.lineage}")
        registered.append((s, register_model_version(url, s.name, s.make(), example)))
    echo("[4/4] waiting for the verdict tags (the server's worker checks each new version) ...")
    rows = []
    for s, v in registered:
        tags = wait_for_tag(url, s.name, v, TAG + "verdict", timeout=300)
        verdict = tags[TAG + "verdict"]
        echo(f"      {s.name}/{v}: {verdict}")
        rows.append({"model": f"{s.name}/{v}", "lineage": s.lineage, "truth": s.expected, "verdict": verdict,
                     "score": tags.get(TAG + "score", ""), "p_value": tags.get(TAG + "p_value", ""),
                     "matched": tags.get(TAG + "matched", ""),
                     "correct": (verdict == "match") == (s.expected == "derived")})
    return rows
