"""Hugging Face Hub plugin: the ``hf://ORG/VAULT`` backend (a private vault repo) and the ``hf://`` model loader."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fp_registry import hookimpl
from fp_registry.backends import Backend, slug
from fp_registry.errors import BackendError
from fp_registry.records import RegistryEntry, Verdict

ENTRIES = "entries"
MANIFEST = "manifest.json"
CLAIM_SCHEME = "fp-registry-v1"


class HfVault(Backend):
    """Entries live in a private Hub repo: ``entries/<id>/manifest.json`` + ``entries/<id>/fingerprint/``.

    Fingerprints never go to the public model repo; matches are recorded as ``verdicts/<suspect>.json`` in the vault.
    """

    scheme = "hf"

    def __init__(self, uri: str, exclude: str | None = None) -> None:
        from .hf_loader import parse_uri

        super().__init__(uri)
        self.repo, _ = parse_uri(uri)
        self.exclude = exclude  # a repo whose own entries are left out (a protected repo is not its own copy)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # huggingface_hub raises HTTP, cache and validation errors
            raise self._failed(what, exc) from exc

    def _failed(self, what: str, exc: Exception) -> BackendError:
        return BackendError(f"Hub vault {self.repo}: {what} failed: {exc.__class__.__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}", self.uri,
                            "check HF_ENDPOINT, HF_TOKEN (write access to the vault) and the repo id")

    def _ensure(self, api: Any) -> None:
        self._call("create_repo", api.create_repo, self.repo, private=True, exist_ok=True)

    def put(self, fp: Any, model_uri: str, entry_id: str | None = None) -> RegistryEntry:
        from .hf_loader import api

        hub = api()
        self._ensure(hub)
        entry_id = entry_id or f"{slug(model_uri.removeprefix('hf://').split('@')[0])}-{fp.method}"
        with tempfile.TemporaryDirectory() as tmp:
            fp.save(Path(tmp) / "fingerprint")  # sets fp.digest
            entry = RegistryEntry(entry_id, model_uri, fp.method, fp.task, fp.digest,
                                  f"{ENTRIES}/{entry_id}/fingerprint", {"spec": fp.spec})
            (Path(tmp) / MANIFEST).write_text(json.dumps(entry.to_dict(), indent=1, sort_keys=True))
            # delete_patterns: re-protecting replaces the entry folder whole, no stale artifact files remain
            self._call("upload", hub.upload_folder, repo_id=self.repo, folder_path=tmp, delete_patterns="*",
                       path_in_repo=f"{ENTRIES}/{entry_id}", commit_message=f"protect {model_uri} ({fp.method})")
        return entry

    def entries(self) -> list[RegistryEntry]:
        from .hf_loader import api, fetch

        hub = api()
        try:
            sha = hub.model_info(self.repo, revision="main").sha
        except Exception as exc:
            if exc.__class__.__name__ == "RepositoryNotFoundError":
                return []  # no vault yet: nothing protected
            raise BackendError(f"Hub vault {self.repo} is unreachable: {exc.__class__.__name__}", self.uri) from exc
        files = self._call("list files", hub.list_repo_files, self.repo, revision=sha)
        manifests = sorted(f for f in files if f.startswith(f"{ENTRIES}/") and f.endswith(f"/{MANIFEST}")
                           and f.count("/") == 2)
        if not manifests:
            return []
        local = self._call("download manifests", fetch, self.repo, sha, manifests)
        out = []
        for name in manifests:
            try:
                out.append(RegistryEntry.from_dict(json.loads((local / name).read_text())))
            except (ValueError, TypeError) as exc:
                raise BackendError(f"vault entry {name} is unreadable: {exc}", self.uri,
                                   "remove or restore that entry folder in the vault") from exc
        return [e for e in out if self.exclude is None or repo_of(e.model_uri) != self.exclude]

    def load(self, entry: RegistryEntry) -> Any:
        from fp_registry.fingerprints import load_fingerprint

        from .hf_loader import api, endpoint, token

        def download() -> Path:
            from huggingface_hub import snapshot_download

            sha = api().model_info(self.repo, revision="main").sha
            return Path(snapshot_download(self.repo, revision=sha, allow_patterns=[f"{entry.fingerprint_path}/*"],
                                          endpoint=endpoint(), token=token()))

        local = self._call("download fingerprint", download)
        return load_fingerprint(local / entry.fingerprint_path, expected_digest=entry.digest)

    def read_file(self, path: str) -> bytes | None:
        """A small file at the vault's head (``protect.json``), or None if the vault or the file does not exist."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download_file(path, Path(tmp))
            return None if local is None else local.read_bytes()

    def download_file(self, path: str, dst: Path) -> Path | None:
        """Download one vault file into ``dst`` (not the shared Hub cache: vault files are the owner's secrets);
        None if the vault or the file does not exist. Other failures (the Hub is down) raise BackendError."""
        from huggingface_hub import hf_hub_download

        from .hf_loader import endpoint, token

        try:
            return Path(hf_hub_download(self.repo, path, revision="main", local_dir=dst, endpoint=endpoint(),
                                        token=token()))
        except Exception as exc:
            # RepositoryNotFound, RevisionNotFound, EntryNotFound, RemoteEntryNotFound: an answer, not a failure
            if exc.__class__.__name__.endswith("NotFoundError"):
                return None
            raise self._failed(f"download {path}", exc) from exc

    def write_file(self, path: str, body: bytes, message: str) -> None:
        from .hf_loader import api

        hub = api()
        self._ensure(hub)
        self._call(f"upload {path}", hub.upload_file, path_or_fileobj=body, path_in_repo=path, repo_id=self.repo,
                   commit_message=message)

    def record_verdict(self, suspect_uri: str, verdict: Verdict, entry: RegistryEntry | None) -> None:
        """Only matches are written (one small commit each); clean verdicts stay in scan reports."""
        if not verdict.is_match:
            return
        from .hf_loader import api

        body = json.dumps({"suspect": suspect_uri, "entry": entry.entry_id if entry else None,
                           **verdict.to_dict()}, indent=1, sort_keys=True).encode()
        name = f"verdicts/{slug(suspect_uri.removeprefix('hf://'))}.json"
        self._call("record verdict", api().upload_file, path_or_fileobj=body, path_in_repo=name,
                   repo_id=self.repo, commit_message=f"match: {suspect_uri}")


def repo_of(model_uri: str) -> str:
    """``hf://ORG/REPO@SHA`` -> ``ORG/REPO``."""
    return model_uri.removeprefix("hf://").split("@", 1)[0]


def claim_in_card(model_repo: str, entry: RegistryEntry) -> str:
    """Add a digest-only claim to the public model card metadata; returns the commit sha. No secrets leave."""
    from huggingface_hub import ModelCard

    from .hf_loader import api, fetch, resolve

    sha, files = resolve(model_repo, "main")
    text = (fetch(model_repo, sha, ["README.md"]) / "README.md").read_text() if "README.md" in files else ""
    card = ModelCard(text or "---\n---\n", ignore_metadata_errors=True)
    card.data.fingerprint = {"scheme": CLAIM_SCHEME, "method": entry.method, "sha256": entry.digest}
    tags = list(card.data.tags or [])
    card.data.tags = tags + ([] if "fingerprinted" in tags else ["fingerprinted"])
    info = api().upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=model_repo,
                             commit_message="fp-registry: fingerprint claim (digest only)")
    return str(info.oid)


@hookimpl
def register_backends(register: Any) -> None:
    register("hf", HfVault)


@hookimpl
def load_model(uri: str, config: dict[str, Any]) -> Any | None:
    if not uri.startswith("hf://"):
        return None
    from .hf_loader import load_hf

    return load_hf(uri, allow_pickle=bool(config.get("allow_pickle")))


@hookimpl
def register_commands(cli: Any) -> None:
    from .hf_cli import hf_group, scan_group, scan_hf_cmd

    cli.add_command(hf_group)
    existing = cli.commands.get("scan")
    if existing is None:
        cli.add_command(scan_group)
    elif hasattr(existing, "add_command"):  # another plugin's scan group: add our hub to it
        existing.add_command(scan_hf_cmd)
