"""Hugging Face Hub webhooks: payload -> UploadEvent (commit from updatedRefs), replay key, and the worker step."""
from __future__ import annotations

import hmac
from typing import Any

from fp_registry.records import UploadEvent, Verdict

MAIN = "refs/heads/main"
#: ``repo.config`` only flips private/xet flags: no new weights, nothing to check.
IGNORED_SCOPES = {"repo.config"}


def secret_ok(given: str | None, secret: str) -> bool:
    """The Hub sends the secret verbatim (no HMAC): compare in constant time."""
    return bool(secret) and hmac.compare_digest((given or "").encode(), secret.encode())


def _scope_is_repo(scope: str) -> bool:
    # Unknown future scopes count as an update on their parent scope (integrations.md §2.6).
    return (scope == "repo" or scope.startswith("repo.")) and scope not in IGNORED_SCOPES


def new_commit(payload: dict[str, Any]) -> str | None:
    """The new head of main from ``updatedRefs``; else ``repo.headSha`` (the wire name, not ``head_sha``)."""
    refs = payload.get("updatedRefs") or []
    for ref in refs:
        if isinstance(ref, dict) and ref.get("ref") == MAIN:
            return ref.get("newSha") or None  # None: main was deleted
    if refs:
        return None  # only other branches, tags or PR refs moved: main is unchanged
    repo = payload.get("repo") or {}
    return repo.get("headSha") or None


def hub_event(payload: dict[str, Any]) -> UploadEvent | None:
    """A model repo got a new commit on main (or was created) -> UploadEvent; anything else -> None."""
    event = payload.get("event") or {}
    repo = payload.get("repo") or {}
    if not _scope_is_repo(str(event.get("scope", ""))) or event.get("action") not in ("create", "update"):
        return None  # deletions, moves, discussions, config changes
    if repo.get("type") != "model" or not repo.get("name"):
        return None
    sha = new_commit(payload)
    if not sha:
        return None
    name = str(repo["name"])
    return UploadEvent("hf", name, sha, f"hf://{name}@{sha}",
                       {"scope": event.get("scope"), "webhook_id": (payload.get("webhook") or {}).get("id")})


def idempotency_key(event: UploadEvent) -> str:
    """One check per (repo, commit): replays from the Hub UI and duplicate deliveries are dropped."""
    return f"hf:{event.name}:{event.version}"


def hf_processor(vault: str, config: dict[str, Any] | None = None) -> Any:
    """The worker step for Hub events: protect the commit if the vault lists its repo, else check it against the
    vault; verdicts reach ``verdict_ready``."""
    def process(event: UploadEvent) -> list[Verdict]:
        from fp_registry.integrations.hf_backend import HfVault
        from fp_registry.errors import UnsafeFormatError
        from fp_registry.pipeline import handle_upload

        from fp_registry.integrations.hf_autoprotect import protect_on_push

        uri = vault if vault.startswith("hf://") else f"hf://{vault}"
        protected = protect_on_push(uri, event.name, event.version)  # a repo the vault lists: protect, not check
        if protected is not None:
            return [_report(protected, event, config)]
        backend = HfVault(uri, exclude=event.name)
        try:  # other load failures (Hub unreachable) propagate: the queue retries them with backoff
            verdicts = handle_upload(event, backend, config=config)
        except UnsafeFormatError as exc:  # retrying cannot help: report it once
            verdicts = [_report(Verdict.skipped(exc.one_line(), suspect=event.model_uri), event, config)]
        if not verdicts:  # a protected repo's own commit, or an empty vault: still report it
            v = Verdict.skipped("no other protected model to compare with", suspect=event.model_uri)
            verdicts = [_report(v, event, config)]
        return verdicts
    return process


def _report(verdict: Verdict, event: UploadEvent, config: dict[str, Any] | None) -> Verdict:
    from fp_registry.plugins import load_plugins, pm

    load_plugins()
    pm.hook.verdict_ready(verdict=verdict, entry=None, event=event, config=config or {})
    return verdict


def dispatch(processors: dict[str, Any], default: Any) -> Any:
    """One processor per event source (``hf``, ``mlflow``...), for a worker that drains a shared queue."""
    def process(event: UploadEvent) -> Any:
        return processors.get(event.source, default)(event)
    return process
