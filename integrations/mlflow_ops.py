"""MLflow flows: protect a version, check a version (tags the verdict), and reconcile versions without a verdict."""
from __future__ import annotations

from typing import Any

from fp_registry.errors import NotApplicableError, ShapeMismatchError, UsageError
from fp_registry.records import RegistryEntry, UploadEvent, Verdict

from .mlflow_backend import TAG, MlflowBackend, verdict_tags
from .protect_inputs import ProtectInputs, fingerprint_inputs


def protect_version(backend: MlflowBackend, name: str, version: str, method: str = "ipguard",
                    scenario: str = "digits-mlp", n_negatives: int = 9, inputs: ProtectInputs | None = None,
                    **settings: Any) -> RegistryEntry:
    """Fingerprint ``models:/NAME/VERSION`` on ``inputs`` (default: ``scenario``'s owner data and references) and
    store it beside the version."""
    from fp_registry.fingerprints import fingerprint
    from fp_registry.loading import load_model

    uri = f"models:/{name}/{version}"
    inputs = inputs or ProtectInputs(scenario=scenario)
    # the owner data and references first: a wrong tag fails before the model is downloaded
    kwargs = fingerprint_inputs(inputs, method, n_negatives, backend.tracking_uri)
    model = load_model(uri, tracking_uri=backend.tracking_uri)
    # whitebox: nulls of the CKA / weight-Gram statistics, so checks of suspects with weights add them
    fp = fingerprint(model, method=method, progress=False, whitebox=True, **kwargs, **settings)
    return backend.put(fp, uri)


def check_version(backend: MlflowBackend, name: str, version: str, event: UploadEvent | None = None,
                  config: dict[str, Any] | None = None) -> list[Verdict]:
    """Check one version against every protected entry and leave a verdict tag on it in every case."""
    from fp_registry.pipeline import check_suspect, handle_upload

    uri = f"models:/{name}/{version}"
    cfg = {"tracking_uri": backend.tracking_uri, **(config or {})}  # the suspect loads from this server
    if event is not None:
        verdicts = handle_upload(event, backend, config=cfg)
    else:
        verdicts = check_suspect(uri, backend, config=cfg)
    if not verdicts:  # nothing protected (or only itself): say so, so reconciliation does not retry forever
        v = Verdict.skipped("no protected model to compare with", suspect=uri)
        backend.record_verdict(uri, v, None)
        verdicts = [v]
    elif all(v.suspect != uri for v in verdicts):  # declined by should_check: still tag it
        for v in verdicts:
            backend.record_verdict(uri, v, None)
    return verdicts


def unchecked_versions(backend: MlflowBackend) -> list[tuple[str, str]]:
    """Versions with neither a verdict tag nor protection: what a missed webhook would leave behind."""
    found = backend._call("search_model_versions", backend.client.search_model_versions, None)
    out = []
    for mv in found:
        tags = dict(mv.tags)
        if TAG + "verdict" not in tags and tags.get(TAG + "protected") != "true":
            out.append((mv.name, str(mv.version)))
    return sorted(out)


def auto_protect(backend: MlflowBackend, name: str, default_scenario: str) -> tuple[str | None, ProtectInputs]:
    """The method of the registered model's ``fp_registry.protect`` tag (None: check, do not protect) and the
    inputs its ``fp_registry.scenario`` / ``data`` / ``negatives`` / ``task`` tags name."""
    rm = backend._call("get_registered_model", backend.client.get_registered_model, name)
    tags = dict(rm.tags) if rm is not None else {}
    return tags.get(TAG + "protect") or None, ProtectInputs.from_tags(tags, TAG, default_scenario)


def process_version(backend: MlflowBackend, name: str, version: str, config: dict[str, Any] | None = None,
                    event: UploadEvent | None = None) -> list[Verdict]:
    """What the worker does for a new version: protect it if its model asks for that, otherwise check it."""
    cfg = config or {}
    # the model's own tags win over the worker's scenario: one worker serves owners of different tasks
    method, inputs = auto_protect(backend, name, cfg.get("scenario", "digits-mlp"))
    if not method:
        return check_version(backend, name, version, event=event, config=cfg)
    suspect = f"models:/{name}/{version}"
    try:
        entry = protect_version(backend, name, version, method=method, inputs=inputs,
                                n_negatives=int(cfg.get("n_negatives", 9)))
    except (UsageError, NotApplicableError, ShapeMismatchError) as exc:
        # a wrong tag or an unfit method does not heal on retry: say so on the version, where its owner looks
        v = Verdict.error(f"not protected: {exc.one_line()}; then run fpreg mlflow protect {name}/{version}",
                          method=method, suspect=suspect)
        _tag(backend, name, version, verdict_tags(v, None))
        return [v]
    v = Verdict.skipped(f"protected with {method} on {inputs.describe()}", method=method, entry_id=entry.entry_id,
                        suspect=suspect)
    _tag(backend, name, version, {k: val for k, val in verdict_tags(v, None).items()
                                  if k.endswith(("verdict", "checked_at"))})
    return [v]


def _tag(backend: MlflowBackend, name: str, version: str, tags: dict[str, str]) -> None:
    for key in sorted(tags, key=lambda k: k == TAG + "verdict"):  # the verdict tag last, as everywhere
        backend._call("tag", backend.client.set_model_version_tag, name, version, key, tags[key])
