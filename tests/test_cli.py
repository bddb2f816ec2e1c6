"""Every documented exit code of ``fpreg``, and the --json shapes."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fp_registry.cli import run
from fp_registry.exitcodes import ExitCode
from fp_registry.modelio import save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, ipguard_fp: Any, digits_owner: torch.nn.Module,
          digits_independent: list[torch.nn.Module]) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cli")
    ipguard_fp.save(d / "fp")
    save_model(copy.deepcopy(digits_owner), d / "copy")
    save_model(digits_independent[3], d / "indep")
    return {k: str(d / k) for k in ("fp", "copy", "indep")} | {"root": str(d)}


def test_verify_match_and_clean(files: dict[str, str], capsys: Any) -> None:
    assert run(["verify", files["fp"], files["copy"], "--json"]) == ExitCode.MATCH
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "match" and out["score"] == 1.0 and {"p_value", "threshold"} <= set(out)
    assert run(["verify", files["fp"], files["indep"]]) == ExitCode.OK
    assert "clean" in capsys.readouterr().out


def test_errors_are_one_line_with_a_next_step(files: dict[str, str], capsys: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip archive")
    assert run(["verify", files["fp"], str(bad)]) == ExitCode.ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "\n" not in err and "torch.export" in err
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"\x80\x04K\x01.")
    assert run(["verify", files["fp"], str(pickled)]) == ExitCode.ERROR
    assert "allow-pickle" in capsys.readouterr().err


def test_nothing_checked(files: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    assert run(["check", files["copy"], "--against", f"file://{tmp_path / 'empty'}"]) == ExitCode.NOTHING_CHECKED
    err = capsys.readouterr().err
    assert "nothing checked: no protected entry at file://" in err and "fpreg register" in err
    assert not (tmp_path / "empty").exists()  # a check only reads the registry


def test_register_then_check(files: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    import shutil

    reg = tmp_path / "reg"
    entry = reg / "owner-ipguard"
    shutil.copytree(files["fp"], entry / "fingerprint")
    from fp_registry.backends import write_json_atomic
    from fp_registry.fingerprints import load_fingerprint

    fp = load_fingerprint(entry / "fingerprint")
    write_json_atomic(entry / "entry.json", {"entry_id": "owner-ipguard", "model_uri": "owner", "method": "ipguard",
                                             "task": "classification", "digest": fp.digest,
                                             "fingerprint_path": str(entry / "fingerprint")})
    assert run(["check", files["copy"], files["indep"], "--against", f"file://{reg}", "--json"]) == ExitCode.MATCH
    rows = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in rows] == ["match", "clean"] and rows[0]["entry_id"] == "owner-ipguard"
    assert len((reg / "verdicts.jsonl").read_text().splitlines()) == 2


def test_register_with_whitebox_then_check_shows_fused_evidence(files: dict[str, str], tmp_path: Path, capsys: Any,
                                                                digits_owner: torch.nn.Module) -> None:
    save_model(copy.deepcopy(digits_owner), tmp_path / "owner")  # a path: the check loads the owner's weights
    reg = f"file://{tmp_path / 'reg'}"
    assert run(["register", str(tmp_path / "owner"), "--to", reg, "-m", "ipguard", "-d", "digits", "--whitebox",
                "--set", "n_queries=20", "--set", "steps=20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "ipguard"
    assert run(["check", files["copy"], "--against", reg]) == ExitCode.MATCH
    head, _, row = capsys.readouterr().out.splitlines()
    assert head.endswith("fused") and row.split()[-2] == "match"  # e.g. "... match (231.4)"
    assert run(["check", files["copy"], "--against", reg, "--json"]) == ExitCode.MATCH
    fused = json.loads(capsys.readouterr().out)[0]["evidence"]["whitebox"]["fused"]
    assert fused["match"] and fused["score"] > fused["threshold"]


def test_usage_errors(files: dict[str, str], capsys: Any) -> None:
    assert run(["verify", files["fp"]]) == ExitCode.USAGE
    assert run(["no-such-command"]) == ExitCode.USAGE
    assert run(["fingerprint", files["copy"], "--method", "nope", "--data", "digits"]) == ExitCode.USAGE
    assert "available" in capsys.readouterr().err
    assert run(["fingerprint", files["copy"], "--data", "no-such-data"]) == ExitCode.USAGE
    assert run(["fingerprint", files["copy"], "--data", "digits", "--train-reps", "0"]) == ExitCode.USAGE
    assert run(["evaluate", "-s", "digits-mlp", "--train-reps", "0"]) == ExitCode.USAGE


def test_fingerprint_command(files: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "fp2"
    code = run(["fingerprint", files["copy"], "-m", "ipguard", "-d", "digits", "-o", str(out), "--set",
                "n_queries=20", "--set", "steps=50", "--json"])
    assert code == ExitCode.OK, capsys.readouterr().err
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "ipguard" and (out / "fingerprint.json").exists()


def test_listing_commands(capsys: Any) -> None:
    assert run(["methods", "--json"]) == ExitCode.OK
    assert "ipguard" in {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert run(["plugins", "--json"]) == ExitCode.OK
    assert "ipguard" in {p["name"] for p in json.loads(capsys.readouterr().out)}
    assert run(["backends", "--json"]) == ExitCode.OK
    assert "file" in {b["scheme"] for b in json.loads(capsys.readouterr().out)}
    assert run(["--help"]) == ExitCode.OK


def test_python_dash_m_and_help_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, fp_registry.cli as c; c._load_plugin_commands(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help must not import torch
    res = subprocess.run([sys.executable, "-m", "fp_registry", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "fpreg" in res.stdout


def test_data_the_model_does_not_accept_is_a_usage_error(files: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    import numpy as np

    np.savez(tmp_path / "wide.npz", X=np.zeros((8, 13), dtype="float32"), y=np.zeros(8, dtype="int64"))
    code = run(["fingerprint", files["copy"], "-m", "ipguard", "-d", str(tmp_path / "wide.npz"), "-o",
                str(tmp_path / "fp")])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE and "\n" not in err and "does not accept the data's rows of shape (13,)" in err
    assert not (tmp_path / "fp").exists()
