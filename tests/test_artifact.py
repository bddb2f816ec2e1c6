"""Fingerprint artifacts: digests, tampering, truncation and atomic writes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fp_registry as fpr
from fp_registry.errors import ArtifactError


@pytest.fixture
def saved(ipguard_fp: Any, tmp_path: Path) -> Path:
    return ipguard_fp.save(tmp_path / "fp")


def test_manifest_contents(saved: Path) -> None:
    m = json.loads((saved / "fingerprint.json").read_text())
    assert m["format_version"] == 1 and m["method"] == "ipguard" and m["task"] == "classification"
    assert m["spec"]["input_shape"] == [64] and m["spec"]["output_dim"] == 10
    assert len(m["meta"]["owner_digest"]) == 64 and m["meta"]["created"] and m["meta"]["library_version"]
    assert set(m["files"]) == {"queries.safetensors"} and m["calibration"]["threshold"] > 0


def test_tampered_tensor_file_is_refused(saved: Path) -> None:
    f = saved / "queries.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt or was tampered"):
        fpr.load_fingerprint(saved)


def test_truncated_file_is_refused(saved: Path) -> None:
    f = saved / "queries.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ArtifactError):
        fpr.load_fingerprint(saved)


def test_edited_manifest_is_refused(saved: Path) -> None:
    m = json.loads((saved / "fingerprint.json").read_text())
    m["calibration"]["threshold"] = 0.0  # an attacker lowering the bar
    (saved / "fingerprint.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="modified"):
        fpr.load_fingerprint(saved)


def test_truncated_manifest_and_missing_files(saved: Path, tmp_path: Path) -> None:
    (saved / "queries.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        fpr.load_fingerprint(saved)
    (saved / "fingerprint.json").write_text('{"format_version": 1, "meth')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        fpr.load_fingerprint(saved)
    with pytest.raises(ArtifactError, match="not a fingerprint artifact"):
        fpr.load_fingerprint(tmp_path / "nowhere")


def test_registry_digest_must_match(saved: Path) -> None:
    with pytest.raises(ArtifactError, match="registry expects"):
        fpr.load_fingerprint(saved, expected_digest="0" * 64)


def test_atomic_overwrite_leaves_no_temp_dirs(ipguard_fp: Any, saved: Path) -> None:
    ipguard_fp.save(saved)  # overwrite in place
    assert sorted(p.name for p in saved.parent.iterdir()) == ["fp"]
    fpr.load_fingerprint(saved)


def test_failed_write_keeps_the_old_artifact(ipguard_fp: Any, saved: Path, monkeypatch: Any) -> None:
    import safetensors.torch

    def boom(*a: Any, **k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        ipguard_fp.save(saved)
    assert fpr.load_fingerprint(saved).digest == ipguard_fp.digest
    assert sorted(p.name for p in saved.parent.iterdir()) == ["fp"]
