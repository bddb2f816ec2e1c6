"""MLflow flows: protect a version, check a version (tags the verdict), and reconcile versions without a verdict."""
from __future__ import annotations

from typing import Any

from fp_registry.records import RegistryEntry, UploadEvent, Verdict

from .mlflow_backend import TAG, MlflowBackend, verdict_tags


def protect_version(backend: MlflowBackend, name: str, version: str, method: str = "ipguard",
                    scenario: str = "digits-mlp", n_negatives: int = 9, **settings: Any) -> RegistryEntry:
    """Fingerprint ``models:/NAME/VERSION`` on the scenario's owner data and store it beside the version."""
    from fp_registry.fingerprints import fingerprint
    from fp_registry.loading import load_model
    from fp_registry.scenarios import owner_inputs, train_owner

    uri = f"models:/{name}/{version}"
    model = load_model(uri, tracking_uri=backend.tracking_uri)
    from fp_registry.methods import get_method_class

    extra: dict[str, Any] = {}
    if get_method_class(method).zoo_use == "calibrate":
        # Independent models of the same task tell the method what "unrelated" looks like (seeds 1000+ are never
        # used as test suspects); methods that train on a zoo (metav) build and cache their own zoo instead.
        extra["negatives"] = [train_owner(scenario, seed=1000 + i) for i in range(n_negatives)]
    # whitebox: nulls of the CKA / weight-Gram statistics, so checks of suspects with weights add them
    fp = fingerprint(model, method=method, progress=False, whitebox=True, **owner_inputs(scenario), **extra,
                     **settings)
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


def auto_protect(backend: MlflowBackend, name: str) -> tuple[str | None, str | None]:
    """(method, scenario) from the registered model's ``fp_registry.protect`` / ``fp_registry.scenario`` tags."""
    rm = backend._call("get_registered_model", backend.client.get_registered_model, name)
    tags = dict(rm.tags) if rm is not None else {}
    return tags.get(TAG + "protect") or None, tags.get(TAG + "scenario") or None


def process_version(backend: MlflowBackend, name: str, version: str, config: dict[str, Any] | None = None,
                    event: UploadEvent | None = None) -> list[Verdict]:
    """What the worker does for a new version: protect it if its model asks for that, otherwise check it."""
    cfg = config or {}
    method, scenario = auto_protect(backend, name)
    if method:
        # the model's own scenario tag wins: one worker serves owners of different tasks and input kinds
        scenario = scenario or cfg.get("scenario", "digits-mlp")
        entry = protect_version(backend, name, version, method=method, scenario=scenario,
                                n_negatives=int(cfg.get("n_negatives", 9)))
        v = Verdict.skipped(f"protected with {method}", method=method, entry_id=entry.entry_id,
                            suspect=f"models:/{name}/{version}")
        tags = {k: val for k, val in verdict_tags(v, None).items() if k.endswith(("verdict", "checked_at"))}
        for key in sorted(tags, key=lambda k: k == TAG + "verdict"):  # the verdict tag last, as everywhere
            backend._call("tag", backend.client.set_model_version_tag, name, version, key, tags[key])
        return [v]
    return check_version(backend, name, version, event=event, config=cfg)
