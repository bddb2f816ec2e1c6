"""MLflow Model Registry backend (``mlflow+http://HOST:PORT``) and loaders for ``models:/`` and ``/invocations``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fp_registry import hookimpl
from fp_registry.backends import Backend
from fp_registry.errors import BackendError, ModelLoadError, UnsafeFormatError
from fp_registry.records import RegistryEntry, Verdict

TAG = "fp_registry."
ARTIFACT_DIR = "fp_registry"
_RANK = {"skipped": 0, "clean": 1, "error": 2, "match": 3}


def tracking_uri_of(uri: str) -> str:
    """``mlflow+http://h:p`` -> ``http://h:p``; ``mlflow://`` -> ``$MLFLOW_TRACKING_URI``."""
    if uri.startswith("mlflow+"):
        return uri[len("mlflow+"):]
    if uri.startswith("mlflow://"):
        rest = uri[len("mlflow://"):]
        return rest or os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    return uri


def split_model_uri(model_uri: str) -> tuple[str, str]:
    """``models:/NAME/VERSION`` -> (NAME, VERSION)."""
    if not model_uri.startswith("models:/") or "/" not in model_uri[len("models:/"):]:
        raise BackendError(f"{model_uri!r} is not models:/NAME/VERSION", model_uri)
    name, version = model_uri[len("models:/"):].rsplit("/", 1)
    return name, version


def client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class MlflowBackend(Backend):
    """Protected model versions carry their fingerprint as logged-model artifacts and ``fp_registry.*`` tags."""

    scheme = "mlflow"

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.tracking_uri = tracking_uri_of(uri)
        self._client: Any = None
        self._best: dict[str, int] = {}  # suspect -> rank of the strongest verdict written by this instance
        self._cache: Path | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client(self.tracking_uri)
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # mlflow raises MlflowException, requests errors, ...
            raise BackendError(f"MLflow at {self.tracking_uri}: {what} failed: {str(exc).splitlines()[0][:200]}",
                               self.uri, "is the tracking server running and reachable?") from exc

    def model_id(self, name: str, version: str) -> str:
        mv = self._call("get_model_version", self.client.get_model_version, name, version)
        source = mv.source or ""
        if not source.startswith("models:/m-"):
            raise BackendError(f"{name}/{version} has no logged model (source {source!r})", self.uri,
                               "register versions with mlflow.<flavor>.log_model(..., registered_model_name=...)")
        return source[len("models:/"):]

    def put(self, fp: Any, model_uri: str, entry_id: str | None = None) -> RegistryEntry:
        name, version = split_model_uri(model_uri)
        model_id = self.model_id(name, version)
        with tempfile.TemporaryDirectory() as tmp:
            fp.save(Path(tmp) / ARTIFACT_DIR)
            self._call("log_model_artifacts", self.client.log_model_artifacts, model_id,
                       str(Path(tmp) / ARTIFACT_DIR), artifact_path=ARTIFACT_DIR)
        # "protected" goes last: whoever sees it (entries(), a waiting client) sees method, digest and task too.
        tags = {"method": fp.method, "digest": fp.digest, "task": fp.task, "protected": "true"}
        for key, value in tags.items():
            self._call("set tag", self.client.set_model_version_tag, name, version, TAG + key, value)
        return self._entry(name, version, {TAG + k: v for k, v in tags.items()})

    def _entry(self, name: str, version: str, tags: dict[str, str]) -> RegistryEntry:
        uri = f"models:/{name}/{version}"
        return RegistryEntry(f"{name}/{version}", uri, tags.get(TAG + "method", ""), tags.get(TAG + "task", ""),
                             tags.get(TAG + "digest", ""), uri, {})

    def entries(self) -> list[RegistryEntry]:
        found = self._call("search_model_versions", self.client.search_model_versions,
                           f"tags.`{TAG}protected` = 'true'")
        return sorted((self._entry(mv.name, mv.version, dict(mv.tags)) for mv in found),
                      key=lambda e: e.entry_id)

    def load(self, entry: RegistryEntry) -> Any:
        from fp_registry.fingerprints import load_fingerprint

        name, version = split_model_uri(entry.model_uri)
        if self._cache is None:
            from fp_registry.config import cache_dir

            # Shared by digest across jobs and processes: load_fingerprint re-checks every file against it.
            self._cache = cache_dir() / "mlflow-fingerprints"
        target = self._cache / entry.digest
        if not (target / ARTIFACT_DIR).exists():
            self._call("download fingerprint", self._download, name, version, target)
        return load_fingerprint(target / ARTIFACT_DIR, expected_digest=entry.digest)

    def _download(self, name: str, version: str, target: Path) -> None:
        import mlflow.artifacts

        # models:/m-<id>/... resolves as a registered-model name, so address the artifacts through the version.
        from fp_registry.modelio import atomic_dir

        with atomic_dir(target) as tmp:  # a concurrent or interrupted download never leaves a half directory
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}/{ARTIFACT_DIR}",
                                                dst_path=str(tmp), tracking_uri=self.tracking_uri)

    def record_verdict(self, suspect_uri: str, verdict: Verdict, entry: RegistryEntry | None) -> None:
        """Tag the checked version; with several entries the strongest verdict (match > error > clean) wins."""
        if not suspect_uri.startswith("models:/") or "@" in suspect_uri:
            return
        rank = _RANK.get(verdict.label, 0)
        if rank < self._best.get(suspect_uri, -1):
            return
        self._best[suspect_uri] = rank
        name, version = split_model_uri(suspect_uri)
        tags = verdict_tags(verdict, entry)
        # The verdict tag goes last: a reader that sees it can rely on score, p-value and match being written.
        for key in sorted(tags, key=lambda k: k == TAG + "verdict"):
            self._call("set verdict tag", self.client.set_model_version_tag, name, version, key, tags[key])


def verdict_tags(verdict: Verdict, entry: RegistryEntry | None) -> dict[str, str]:
    """The ``fp_registry.*`` tags describing one verdict (short strings, no secrets)."""
    import datetime as dt

    def num(x: float | None) -> str:
        return "" if x is None or x != x else f"{x:.4g}"

    tags = {"verdict": verdict.label, "score": num(verdict.score), "p_value": num(verdict.p_value),
            "matched": (entry.entry_id if entry is not None and verdict.is_match else ""),
            "method": verdict.method, "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    reason = verdict.evidence.get("reason") or verdict.evidence.get("error")
    if reason:
        tags["reason"] = str(reason)[:500]  # long enough for the next step it names; MLflow allows 100k
    for key, ev in (verdict.evidence.get("whitebox") or {}).items():  # white-box evidence beside the verdict
        if isinstance(ev, dict) and "score" in ev:
            tags[f"whitebox.{key}"] = num(ev["score"])
            tags[f"whitebox.{key}_p"] = num(ev.get("p_normal", ev.get("p_empirical")))  # fused: empirical only
            if "match" in ev:
                tags[f"whitebox.{key}_match"] = str(ev["match"]).lower()
    return {TAG + k: v for k, v in tags.items()}


@hookimpl
def register_backends(register: Any) -> None:
    for scheme in ("mlflow", "mlflow+http", "mlflow+https"):
        register(scheme, MlflowBackend)


@hookimpl
def load_model(uri: str, config: dict[str, Any]) -> Any | None:
    """``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and ``http(s)://HOST:PORT/invocations``."""
    if uri.startswith(("http://", "https://")) and uri.rstrip("/").endswith("/invocations"):
        from .mlflow_loader import InvocationsModel

        return InvocationsModel(uri)
    if uri.startswith("models:/"):
        from .mlflow_loader import load_registered

        return load_registered(uri, config)
    return None


@hookimpl
def register_commands(cli: Any) -> None:
    from fp_registry.hooks.serve_cli import serve

    from .mlflow_cli import mlflow_group

    cli.add_command(mlflow_group)
    cli.add_command(serve)


__all__ = ["MlflowBackend", "verdict_tags", "split_model_uri", "tracking_uri_of", "ModelLoadError",
           "UnsafeFormatError"]
