"""Helpers for the MLflow tests: a real ``mlflow server`` on sqlite, and registering tiny models into it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

from fp_registry.integrations.mlflow_demo import register_model_version, wait_for_tag  # noqa: F401
from fp_registry.integrations.mlflow_server import free_port, start_server, stop_server  # noqa: F401

PY = Path(sys.executable)


def register(url: str, name: str, model: Any) -> str:
    """Log ``model`` as a pt2 program and register it under ``name``; return the new version."""
    from fp_registry.scenarios import owner_inputs

    return register_model_version(url, name, model, owner_inputs("digits-mlp")["data"][:2])


def fine_tuned(model: Any, seed: int = 5) -> Any:
    import copy

    from fp_registry.scenarios import get_scenario
    from fp_registry.training import fit

    x, y = get_scenario("digits-mlp").load_data().owner
    ft = copy.deepcopy(model)
    fit(ft, "classification", x, y, epochs=3, lr=1e-3, seed=seed)
    return ft


def server_fixture(tmp_path_factory: Any, app_name: str | None = None) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    proc, url = start_server(root, app_name)
    try:
        yield url
    finally:
        stop_server(proc)
