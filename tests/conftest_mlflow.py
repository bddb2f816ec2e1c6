"""Helpers for the MLflow tests: a real ``mlflow server`` on sqlite, and registering tiny models into it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

PY = Path(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env() -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=Fernet.generate_key().decode(),
               MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https", MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
               MLFLOW_WEBHOOK_CACHE_TTL="1", PATH=f"{PY.parent}:{env.get('PATH', '')}")
    return env


def start_server(root: Path, app_name: str | None = None, extra_env: dict[str, str] | None = None,
                 timeout: float = 300.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``mlflow server`` (one worker) and wait until it answers; return the process and its URL."""
    port = free_port()
    cmd = [str(PY.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    if app_name:
        cmd += ["--app-name", app_name]
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, env={**server_env(), **(extra_env or {})}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def register(url: str, name: str, model: Any, tags: dict[str, str] | None = None) -> str:
    """Log ``model`` as a pt2 program and register it under ``name``; return the new version."""
    import mlflow
    import mlflow.pytorch
    from fp_registry.scenarios import owner_inputs

    x = owner_inputs("digits-mlp")["data"][:2].numpy()
    mlflow.set_tracking_uri(url)
    # pip_requirements skips MLflow's requirement inference, a 10 s subprocess per model
    info = mlflow.pytorch.log_model(model, name="model", input_example=x, registered_model_name=name,
                                    pip_requirements=["torch"])
    version = str(info.registered_model_version)
    if tags:
        for k, v in tags.items():
            mlflow.MlflowClient(url).set_model_version_tag(name, version, k, v)
    return version


def fine_tuned(model: Any, seed: int = 5) -> Any:
    import copy

    from fp_registry.scenarios import get_scenario
    from fp_registry.training import fit

    x, y = get_scenario("digits-mlp").load_data().owner
    ft = copy.deepcopy(model)
    fit(ft, "classification", x, y, epochs=3, lr=1e-3, seed=seed)
    return ft


def wait_for_tag(url: str, name: str, version: str, key: str, timeout: float = 60.0) -> dict[str, str]:
    import mlflow

    c = mlflow.MlflowClient(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        tags = dict(c.get_model_version(name, version).tags)
        if key in tags:
            return tags
        time.sleep(0.5)
    raise AssertionError(f"{name}/{version} got no {key} tag in {timeout}s")


def server_fixture(tmp_path_factory: Any, app_name: str | None = None) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    proc, url = start_server(root, app_name)
    try:
        yield url
    finally:
        stop(proc)
