"""Start and stop a local ``mlflow server`` on sqlite (the demo's embedded default and the tests' real server)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fp_registry.errors import BackendError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook_env() -> dict[str, str]:
    """Server settings that make local webhooks work; see the README's MLflow section for why each is needed."""
    from cryptography.fernet import Fernet

    return {"MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": os.environ.get("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
            or Fernet.generate_key().decode(),
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_CACHE_TTL": "1"}


def server_command(root: Path, port: int, app_name: str | None = None) -> list[str]:
    """The ``mlflow server`` command line for a sqlite store and local artifacts under ``root``."""
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe) if exe.exists() else "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # one worker: one in-process check worker, and no per-worker webhook secret keys
    return cmd + (["--app-name", app_name] if app_name else [])


def start_server(root: Path, app_name: str | None = None, port: int | None = None,
                 extra_env: dict[str, str] | None = None, timeout: float = 300.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server in the background and wait until ``/health`` answers; return the process and its URL."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    # MLflow's GenAI job runners (5 huey processes) are not needed to register and tag models.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, **webhook_env(), **(extra_env or {}),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen(server_command(root, port, app_name), cwd=root, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BackendError(f"mlflow server exited with code {proc.returncode}", url,
                               f"see {root / 'server.log'}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise BackendError(f"mlflow server did not answer within {timeout:.0f} s", url, f"see {root / 'server.log'}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
