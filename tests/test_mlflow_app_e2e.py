"""``fpreg demo`` end to end: ``mlflow server --app-name fp-registry`` protects and checks every created version."""
from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("mlflow")
import torch  # noqa: E402

torch.set_num_threads(1)


def test_demo_registers_protects_and_tags_every_version(tmp_path, capsys):
    from fp_registry.cli import run
    from fp_registry.hooks.queue import Queue

    code = run(["demo", "--dir", str(tmp_path / "demo"), "--json"])  # run() loads plugin commands, as fpreg does
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {r["model"].split("/")[0]: r for r in json.loads(out)}
    assert sorted(rows) == ["independent-a", "independent-b", "suspect-distilled", "suspect-finetuned",
                            "suspect-pruned-finetuned"]
    for name in ("suspect-finetuned", "suspect-pruned-finetuned"):
        assert rows[name]["verdict"] == "match" and rows[name]["matched"] == "digits-owner/1", rows[name]
    for name in ("independent-a", "independent-b"):
        assert rows[name]["verdict"] == "clean" and rows[name]["matched"] == "", rows[name]
    # distillation is IPGuard's known weak spot (README): the demo reports whatever the verdict is
    assert rows["suspect-distilled"]["verdict"] in ("match", "clean")
    assert all(0 < float(r["p_value"]) <= 1 for r in rows.values())
    queue, deadline = Queue(tmp_path / "demo" / "queue.db"), time.time() + 30
    while queue.counts() != {"done": 6} and time.time() < deadline:  # tags are written just before "done"
        time.sleep(0.2)
    assert queue.counts() == {"done": 6}  # one job per created version (owner + 5 suspects), none left behind
