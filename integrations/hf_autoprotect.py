"""Protection on push: repos listed in the vault's ``protect.json`` are re-fingerprinted at each new commit.

The list lives in the private vault, which only the owner writes, so nobody else can make the worker protect (or
stop protecting) a repo. One entry per repo name (or ``fnmatch`` pattern such as ``acme/*``)::

    {"repos": {"acme/digits-net": {"method": "ipguard", "data": "vault:data/acme-digits-net.npz",
                                   "negatives": ["hf://acme/baseline-a", "..."], "task": "classification"}}}

``data`` is a file of the vault (``vault:PATH``) or a bundled dataset name; without it, ``scenario`` (default
``digits-mlp``) gives the owner data and references, as for ``fpreg hf protect``.
"""
from __future__ import annotations

import fnmatch
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fp_registry.errors import UsageError

from .protect_inputs import ProtectInputs

PROTECT_FILE = "protect.json"
VAULT_PREFIX = "vault:"


def protect_list(vault: Any) -> dict[str, dict[str, Any]]:
    """The vault's ``protect.json`` repos (empty without the file or the vault)."""
    raw = vault.read_file(PROTECT_FILE)
    if raw is None:
        return {}
    try:
        repos = json.loads(raw).get("repos", {})
    except (ValueError, AttributeError):
        repos = None
    if not isinstance(repos, dict) or not all(isinstance(v, dict) for v in repos.values()):
        raise UsageError(f"{PROTECT_FILE} in vault {vault.repo} is not {{\"repos\": {{NAME: {{...}}}}}}",
                         "fix it, or protect again with fpreg hf protect REPO --on-push")
    return repos


def protection_for(vault: Any, repo: str) -> dict[str, Any] | None:
    """The settings that protect ``repo`` on push (an exact name wins over a pattern), or None."""
    repos = protect_list(vault)
    if repo in repos:
        return repos[repo]
    return next((v for pattern, v in sorted(repos.items()) if fnmatch.fnmatchcase(repo, pattern)), None)


@contextmanager
def inputs_of(vault: Any, settings: dict[str, Any]) -> Iterator[ProtectInputs]:
    """``ProtectInputs`` for one ``protect.json`` entry; a ``vault:`` data file is downloaded for the duration."""
    data = settings.get("data")
    common = {"scenario": settings.get("scenario") or "digits-mlp", "task": settings.get("task") or "classification",
              "negatives": tuple(settings.get("negatives") or ())}
    if data and str(data).startswith(VAULT_PREFIX):
        with tempfile.TemporaryDirectory() as tmp:  # the owner's data leaves no copy on the worker's disk
            local = vault.download_file(str(data)[len(VAULT_PREFIX):], Path(tmp))  # the Hub down: raises, retried
            if local is None:  # a wrong entry, which no retry heals
                raise UsageError(f"{data} of {PROTECT_FILE} is not in vault {vault.repo}",
                                 "protect again with fpreg hf protect REPO --data FILE.npz --on-push")
            yield ProtectInputs(data=str(local), local_files=True, **common)
        return
    yield ProtectInputs(data=data or None, local_files=False, **common)  # a bundled name, never a worker file


def remember(vault: Any, repo: str, settings: dict[str, Any], data_file: Path | None = None) -> None:
    """Add or replace ``repo`` in the vault's ``protect.json`` (uploading ``data_file`` to ``data/`` first)."""
    from fp_registry.backends import slug

    settings = {k: v for k, v in settings.items() if v not in (None, "", [], ())}
    if data_file is not None:
        path = f"data/{slug(repo)}.npz"
        vault.write_file(path, data_file.read_bytes(), f"owner data for {repo}")
        settings["data"] = VAULT_PREFIX + path
    repos = protect_list(vault)
    repos[repo] = settings
    body = json.dumps({"repos": repos}, indent=1, sort_keys=True).encode()
    vault.write_file(PROTECT_FILE, body, f"protect {repo} on push")


def protect_on_push(vault_uri: str, repo: str, sha: str) -> Any:
    """Protect ``repo@sha`` if the vault lists it: a skipped verdict saying so, an error verdict for settings that
    cannot work (reported once, never retried), or None if ``repo`` is not listed (then it is checked)."""
    from fp_registry.errors import NotApplicableError, ShapeMismatchError
    from fp_registry.records import Verdict

    from .hf_backend import HfVault
    from .hf_cli import protect_repo

    vault = HfVault(vault_uri)
    uri, method = f"hf://{repo}@{sha}", ""
    try:
        settings = protection_for(vault, repo)
        if settings is None:
            return None
        method = str(settings.get("method") or "ipguard")
        with inputs_of(vault, settings) as inputs:
            entry = protect_repo(f"{repo}@{sha}", vault_uri, method=method, inputs=inputs)
    except (UsageError, NotApplicableError, ShapeMismatchError) as exc:
        return Verdict.error(f"not protected: {exc.one_line()}; fix {PROTECT_FILE} in the vault, then run fpreg hf "
                             f"protect {repo} --on-push", method=method, suspect=uri)
    where = f"data {settings['data']}" if settings.get("data") else f"scenario {inputs.scenario}"
    return Verdict.skipped(f"protected with {method} on {where}", method=method, entry_id=entry.entry_id,
                           suspect=uri)
