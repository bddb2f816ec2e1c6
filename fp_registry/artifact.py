"""Fingerprint artifacts on disk: a JSON manifest plus safetensors files, digest-checked, written atomically."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .errors import ArtifactError
from .modelio import atomic_dir

FORMAT_VERSION = 1
MANIFEST = "fingerprint.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """Digest of the manifest without its own ``digest`` field (covers every file digest too)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_artifact(path: str | os.PathLike[str], manifest: dict[str, Any],
                   groups: dict[str, dict[str, torch.Tensor]]) -> str:
    """Write ``groups`` (file stem -> tensors) and the manifest; return the artifact digest."""
    from safetensors.torch import save_file

    target = Path(path)
    with atomic_dir(target) as tmp:
        files = {}
        for stem, tensors in groups.items():
            name = f"{stem}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / name))
            files[name] = file_sha256(tmp / name)
        manifest = {**manifest, "format_version": FORMAT_VERSION, "files": files}
        manifest["digest"] = manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest["digest"]


def read_artifact(path: str | os.PathLike[str],
                  expected_digest: str | None = None) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read and verify an artifact; any missing, altered or truncated file is refused."""
    from safetensors.torch import load_file

    root = Path(path)
    manifest = _read_manifest(root)
    if manifest_digest(manifest) != manifest.get("digest"):
        raise ArtifactError(f"{root / MANIFEST} was modified after it was written (digest mismatch)")
    if expected_digest and expected_digest != manifest["digest"]:
        raise ArtifactError(f"artifact {root} has digest {manifest['digest'][:12]}, the registry expects "
                            f"{expected_digest[:12]}")
    groups = {}
    for name, digest in manifest.get("files", {}).items():
        file = root / name
        if "/" in name or not file.is_file():
            raise ArtifactError(f"artifact file {name} is missing from {root}")
        if file_sha256(file) != digest:
            raise ArtifactError(f"artifact file {name} in {root} is corrupt or was tampered with")
        groups[name.removesuffix(".safetensors")] = load_file(str(file))
    return manifest, groups


def _read_manifest(root: Path) -> dict[str, Any]:
    if not (root / MANIFEST).is_file():
        raise ArtifactError(f"{root} is not a fingerprint artifact (no {MANIFEST})")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{root / MANIFEST} is not valid JSON (truncated?)") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{root / MANIFEST} has unsupported format version "
                            f"{manifest.get('format_version') if isinstance(manifest, dict) else '?'}",
                            "upgrade fp-registry or re-create the fingerprint")
    return manifest
