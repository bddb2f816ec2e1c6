"""The three flows: register (model -> fingerprint -> registry), check (suspect -> verdicts), handle an upload."""
from __future__ import annotations

from typing import Any

from .backends import Backend, get_backend
from .errors import FpRegistryError, ShapeMismatchError
from .fingerprints import fingerprint
from .records import RegistryEntry, UploadEvent, Verdict
from .suspect import Suspect


def register_model(model: Any, to: str, method: str = "metav", model_uri: str | None = None,
                   entry_id: str | None = None, **kwargs: Any) -> RegistryEntry:
    """Fingerprint ``model`` and store the result in the backend at ``to``."""
    fp = fingerprint(model, method=method, **kwargs)
    uri = model_uri or (model if isinstance(model, str) else "in-memory")
    return get_backend(to).put(fp, uri, entry_id)


def check_suspect(suspect: Any, against: str | Backend, *, event: UploadEvent | None = None,
                  config: dict[str, Any] | None = None, allow_pickle: bool = False,
                  record: bool = True) -> list[Verdict]:
    """Verify ``suspect`` against every entry; one failing verifier is recorded and the rest still run."""
    from .plugins import load_plugins, pm

    load_plugins()
    backend = against if isinstance(against, Backend) else get_backend(against)
    name = suspect if isinstance(suspect, str) else getattr(suspect, "name", type(suspect).__name__)
    s = Suspect(suspect, name=name, allow_pickle=allow_pickle, load_config=config)
    verdicts = []
    for entry in backend.entries():
        if isinstance(suspect, str) and suspect == entry.model_uri:
            continue  # the protected model itself is not a suspect
        verdict = _check_one(backend, entry, s, config or {})
        verdicts.append(verdict)
        if record:
            backend.record_verdict(name, verdict, entry)
        pm.hook.verdict_ready(verdict=verdict, entry=entry, event=event, config=config or {})
    return verdicts


def _check_one(backend: Backend, entry: RegistryEntry, suspect: Suspect, config: dict[str, Any]) -> Verdict:
    from .whitebox_checks import add_whitebox_evidence

    try:
        fp = backend.load(entry)
        v = fp.verify(suspect)
        add_whitebox_evidence(v, fp, entry, suspect, config)
    except ShapeMismatchError as exc:
        return Verdict.skipped(exc.one_line(), entry.method, entry.entry_id, suspect.name)
    except FpRegistryError as exc:
        return Verdict.error(exc.one_line(), entry.method, entry.entry_id, suspect.name)
    except Exception as exc:  # a verifier bug must not stop the other checks
        return Verdict.error(f"{exc.__class__.__name__}: {str(exc)[:200]}", entry.method, entry.entry_id,
                             suspect.name)
    return Verdict(**{**v.__dict__, "entry_id": entry.entry_id})


def handle_upload(event: UploadEvent, against: str | Backend, config: dict[str, Any] | None = None) -> list[Verdict]:
    """Check one upload unless a ``should_check`` plugin declines it."""
    from .plugins import load_plugins, pm

    load_plugins()
    if pm.hook.should_check(event=event, config=config or {}) is False:
        verdict = Verdict.skipped("declined by a should_check plugin", suspect=event.model_uri)
        pm.hook.verdict_ready(verdict=verdict, entry=None, event=event, config=config or {})
        return [verdict]
    return check_suspect(event.model_uri, against, event=event, config=config)


def worst_exit_code(verdicts: list[Verdict]) -> int:
    """1 if anything matched, else 2 if anything failed, else 3 if nothing was checked, else 0."""
    from .exitcodes import ExitCode

    labels = {v.label for v in verdicts}
    if "match" in labels:
        return ExitCode.MATCH
    if "error" in labels:
        return ExitCode.ERROR
    if "clean" not in labels:
        return ExitCode.NOTHING_CHECKED
    return ExitCode.OK
