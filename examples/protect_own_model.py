"""Protect your own model in MLflow: your data as a run artifact, your reference models as versions, then tags.

A wine classifier stands in for your model (no embedded scenario covers wine). The script starts a local MLflow
server on sqlite unless you pass a tracking URI, and does what the worker (``fpreg serve`` or the ``mlflow server
--app-name fp-registry`` plugin) does on each new version: protect the owner's versions, check every other one.

    python examples/protect_own_model.py [http://127.0.0.1:5000]
"""
from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

WINE_MLP = {"in_features": 13, "hidden": [32], "out_features": 3}


def wine_model(seed: int, x: np.ndarray, y: np.ndarray, parent: torch.nn.Module | None = None) -> torch.nn.Module:
    """A wine classifier trained from ``seed``, or ``parent`` fine-tuned for two epochs (what a pirate does)."""
    from fp_registry import nets
    from fp_registry.training import fit

    torch.manual_seed(seed)
    model = copy.deepcopy(parent) if parent is not None else nets.build("mlp", WINE_MLP)
    return fit(model, "classification", torch.from_numpy(x), torch.from_numpy(y), epochs=2 if parent else 40,
               lr=1e-3 if parent else 1e-2, seed=seed)


def log_owner_data(url: str, x: np.ndarray, y: np.ndarray, tmp: Path) -> str:
    """Log the owner data as an ``.npz`` run artifact; its ``runs:/`` URI is what the ``fp_registry.data`` tag names.

    Keep this run where only the owner can read it: the fingerprint is built from this data.
    """
    import mlflow

    np.savez(tmp / "wine.npz", X=x, y=y)
    mlflow.set_tracking_uri(url)
    with mlflow.start_run(run_name="owner-data") as run:
        mlflow.log_artifact(str(tmp / "wine.npz"), artifact_path="owner_data")
    return f"runs:/{run.info.run_id}/owner_data/wine.npz"


def run(url: str, tmp: Path) -> list[dict[str, Any]]:
    """Protect the owner through its tags, then check a pirated copy and an independent model; one row each."""
    import mlflow

    from fp_registry.data import load_data_arg
    from fp_registry.integrations.mlflow_backend import MlflowBackend
    from fp_registry.integrations.mlflow_demo import register_model_version
    from fp_registry.integrations.mlflow_ops import process_version

    x, y = load_data_arg("wine")
    example = torch.from_numpy(x[:2])
    owner = wine_model(0, x, y)
    refs = [f"models:/wine-baseline/{register_model_version(url, 'wine-baseline', wine_model(s, x, y), example)}"
            for s in (1, 2, 3)]  # models you trained independently on the same task, e.g. earlier baselines
    mlflow.MlflowClient(url).create_registered_model("wine-classifier", tags={
        "fp_registry.protect": "ipguard", "fp_registry.data": log_owner_data(url, x, y, tmp),
        "fp_registry.negatives": ",".join(refs)})
    rows = []
    for name, model in [("wine-classifier", owner), ("pirate-wine-finetuned", wine_model(5, x, y, parent=owner)),
                        ("someone-wine-independent", wine_model(9, x, y))]:
        version = register_model_version(url, name, model, example)
        [v] = process_version(MlflowBackend(f"mlflow+{url}"), name, version)  # what the worker does per version
        rows.append({"version": f"{name}/{version}", "verdict": v.label, "score": v.score, "p_value": v.p_value})
    return rows


def main(url: str | None = None) -> int:
    from fp_registry.integrations.mlflow_server import start_server, stop_server

    with tempfile.TemporaryDirectory(prefix="fp-registry-own-") as tmp:
        proc, url = (None, url) if url else start_server(Path(tmp) / "mlflow")
        try:
            for row in run(url, Path(tmp)):
                print(f"{row['version']:32s} verdict={row['verdict']:7s} score={row['score']:.3f} p={row['p_value']}")
        finally:
            if proc is not None:
                stop_server(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
