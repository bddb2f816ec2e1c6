"""The download path against a real local Hub mirror: olah 0.5.4 in offline mode serving git repos (no network)."""
from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("huggingface_hub")
OLAH = shutil.which("olah-cli") or str(Path(sys.executable).parent / "olah-cli")
if not Path(OLAH).exists() or shutil.which("git") is None:
    pytest.skip("olah-cli (pip install 'fp-registry[dev]') and git are needed for the mirror tests",
                allow_module_level=True)

from fp_registry import nets  # noqa: E402
from fp_registry.errors import UnsafeFormatError  # noqa: E402
from fp_registry.integrations.hf_loader import save_reference  # noqa: E402
from fp_registry.loading import load_model  # noqa: E402

X = torch.linspace(-1, 1, 3 * 64).reshape(3, 64)
CONFIG = """[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{root}/repos"
mirrors-path = ["{root}/mirrors"]
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"
hf-scheme = "http"
hf-netloc = "127.0.0.1:9"
hf-lfs-netloc = "127.0.0.1:9"
[accessibility]
offline = true
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Two repos (a reference net with two commits and a tag, a pickled-only repo) served by olah."""
    root = tmp_path_factory.mktemp("olah")
    torch.manual_seed(0)
    v1, v2 = (nets.build("mlp", {"in_features": 64, "hidden": [16], "out_features": 10}) for _ in range(2))
    net = root / "mirrors/models/acme/tiny-net"
    save_reference(v1, net)
    git(net, "init", "-q", "-b", "main"), git(net, "add", "."), git(net, "commit", "-qm", "v1"), git(net, "tag", "v1")
    sha1 = git(net, "rev-parse", "HEAD")
    save_reference(v2, net)
    git(net, "add", "."), git(net, "commit", "-qm", "v2")
    pickled = root / "mirrors/models/acme/pickled"
    pickled.mkdir(parents=True)
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    (pickled / "pytorch_model.bin").write_bytes(buf.getvalue())
    git(pickled, "init", "-q", "-b", "main"), git(pickled, "add", "."), git(pickled, "commit", "-qm", "pickle")
    port = free_port()
    (root / "olah.toml").write_text(CONFIG.format(port=port, root=root))
    log = open(root / "olah.log", "w")
    proc = subprocess.Popen([OLAH, "-c", str(root / "olah.toml")], cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/api/models/acme/tiny-net/revision/main", proc)
        with pytest.MonkeyPatch.context() as mp:
            from huggingface_hub import constants

            mp.setattr(constants, "HF_HUB_CACHE", str(root / "cache"))
            mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
            mp.setenv("FP_REGISTRY_HF_ENDPOINT", url)
            yield {"v1": v1, "v2": v2, "sha1": sha1, "log": root / "olah.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("olah exited at start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail("olah did not answer within 60 s")


def fetched(mirror, repo: str) -> list[str]:
    lines = Path(mirror["log"]).read_text().splitlines()
    return sorted({ln.split("/resolve/")[1].split("/", 1)[1].split(" ")[0] for ln in lines
                   if '"GET /' + repo + "/resolve/" in ln})


def test_branch_tag_and_commit_resolve_through_the_mirror(mirror):
    assert torch.equal(load_model("hf://acme/tiny-net")(X), mirror["v2"](X))
    assert torch.equal(load_model("hf://acme/tiny-net@v1")(X), mirror["v1"](X))
    assert torch.equal(load_model(f"hf://acme/tiny-net@{mirror['sha1']}")(X), mirror["v1"](X))
    assert fetched(mirror, "acme/tiny-net") == ["config.json", "model.safetensors"]  # never README.md


def test_pickled_only_repo_is_refused_without_fetching_it(mirror):
    with pytest.raises(UnsafeFormatError, match="unsafe format"):
        load_model("hf://acme/pickled")
    assert fetched(mirror, "acme/pickled") == []
