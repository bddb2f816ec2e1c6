"""Registry backends, chosen by URI scheme, and the built-in local directory backend (``file://DIR``)."""
from __future__ import annotations

import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BackendError, UnknownBackendError
from .records import RegistryEntry, Verdict

if TYPE_CHECKING:  # the Backend ABC stays light: integration plugins import it before torch is needed
    from .fingerprints import Fingerprint


class Backend(ABC):
    """Where protected entries live, and where verdicts about suspects are written back."""

    scheme: str = ""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @abstractmethod
    def put(self, fp: "Fingerprint", model_uri: str, entry_id: str | None = None) -> RegistryEntry:
        """Store a fingerprint beside the protected model and return its entry."""

    @abstractmethod
    def entries(self) -> list[RegistryEntry]:
        """Every protected entry."""

    @abstractmethod
    def load(self, entry: RegistryEntry) -> "Fingerprint":
        """The entry's fingerprint, digest-checked against the entry."""

    def record_verdict(self, suspect_uri: str, verdict: Verdict, entry: RegistryEntry | None) -> None:
        """Write a verdict back next to the suspect (tags, a log); default: nothing."""


def get_backend(uri: str) -> Backend:
    """Build the backend for ``uri`` from the plugin registered for its scheme."""
    from .plugins import backends

    table = backends()
    scheme = uri.split("://", 1)[0] if "://" in uri else ("models" if uri.startswith("models:") else "file")
    if scheme not in table:
        raise UnknownBackendError(uri, list(table))
    return table[scheme](uri)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "model"


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


class LocalBackend(Backend):
    """A directory of entries: ``DIR/<entry_id>/entry.json`` + ``fingerprint/``; verdicts in ``verdicts.jsonl``.

    Keep the directory private (mode 700): fingerprints are secrets.
    """

    scheme = "file"

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.root = Path(uri[len("file://"):] if uri.startswith("file://") else uri)

    def put(self, fp: "Fingerprint", model_uri: str, entry_id: str | None = None) -> RegistryEntry:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry_id = entry_id or f"{slug(model_uri)}-{fp.method}"
        folder = self.root / entry_id
        fp.save(folder / "fingerprint")
        entry = RegistryEntry(entry_id, model_uri, fp.method, fp.task, fp.digest, str(folder / "fingerprint"),
                              {"spec": fp.spec})
        write_json_atomic(folder / "entry.json", entry.to_dict())
        return entry

    def entries(self) -> list[RegistryEntry]:
        if not self.root.exists():
            return []
        out = []
        for path in sorted(self.root.glob("*/entry.json")):
            try:
                out.append(RegistryEntry.from_dict(json.loads(path.read_text())))
            except (json.JSONDecodeError, TypeError) as exc:
                raise BackendError(f"registry entry {path} is unreadable: {exc}", self.uri,
                                   "remove or restore that entry folder") from exc
        return out

    def load(self, entry: RegistryEntry) -> "Fingerprint":
        from .fingerprints import load_fingerprint

        return load_fingerprint(entry.fingerprint_path, expected_digest=entry.digest)

    def record_verdict(self, suspect_uri: str, verdict: Verdict, entry: RegistryEntry | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps({"suspect": suspect_uri, "entry": entry.entry_id if entry else None, **verdict.to_dict()})
        with open(self.root / "verdicts.jsonl", "a") as f:
            f.write(line + "\n")
