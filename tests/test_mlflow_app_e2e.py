"""``mlflow server --app-name fp-registry`` end to end: creating a version is enough to get it protected or checked."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("mlflow")
import torch  # noqa: E402

from conftest_mlflow import fine_tuned, register, start_server, stop_server, wait_for_tag  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-app")
    proc, url = start_server(root, app_name="fp-registry", extra_env={"FP_REGISTRY_QUEUE": str(root / "q.db")})
    try:
        yield url, root
    finally:
        stop_server(proc)


def test_versions_created_through_the_server_get_protected_and_checked(app_server):
    import mlflow

    from fp_registry.hooks.queue import Queue
    from fp_registry.scenarios import train_owner

    url, root = app_server
    mlflow.MlflowClient(url).create_registered_model("owner", tags={"fp_registry.protect": "ipguard"})
    owner = train_owner("digits-mlp", seed=0)
    wait_for_tag(url, "owner", register(url, "owner", owner), "fp_registry.protected", timeout=300)
    ft = register(url, "copy", fine_tuned(owner))
    ind = register(url, "other", train_owner("digits-mlp", seed=7))
    assert wait_for_tag(url, "copy", ft, "fp_registry.verdict", timeout=180)["fp_registry.matched"] == "owner/1"
    assert wait_for_tag(url, "other", ind, "fp_registry.verdict", timeout=180)["fp_registry.verdict"] == "clean"
    queue, deadline = Queue(root / "q.db"), time.time() + 30
    while queue.counts() != {"done": 3} and time.time() < deadline:  # tags are written just before "done"
        time.sleep(0.2)
    assert queue.counts() == {"done": 3}  # one job per created version, none left behind
