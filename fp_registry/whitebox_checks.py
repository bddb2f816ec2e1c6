"""White-box evidence beside a black-box verdict: when the suspect has weights, compare it with the registered owner."""
from __future__ import annotations

import threading
from typing import Any

from torch import nn

from .records import RegistryEntry

_owners: dict[str, nn.Module] = {}
_lock = threading.Lock()


def _owner_model(uri: str, config: dict[str, Any]) -> nn.Module:
    """The protected model itself, loaded once per process from its registry URI (MLflow, Hub or a path)."""
    from .loading import load_model

    with _lock:
        if uri not in _owners:
            extra = {k: v for k, v in config.items() if k != "allow_pickle"}
            model = load_model(uri, **extra)
            if not isinstance(model, nn.Module):
                raise TypeError(f"the protected model {uri} loads without weights")
            _owners[uri] = model
        return _owners[uri]


def whitebox_evidence(fp: Any, entry: RegistryEntry | None, suspect: Any,
                      config: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """CKA and weight-Gram evidence with p-values, or None when it does not apply.

    It applies when the fingerprint carries a white-box reference (``fingerprint(..., whitebox=True)``), the
    suspect is a torch module (a Hub scan or a registry check downloads its weights anyway), and the entry
    names the owner's model. ``config["whitebox"] = False`` turns it off. A failure here is reported in the
    evidence and never changes the black-box verdict.
    """
    cfg = config or {}
    ref = (getattr(fp, "meta", None) or {}).get("whitebox")
    module = getattr(suspect, "module", suspect)
    if not ref or cfg.get("whitebox") is False or not isinstance(module, nn.Module):
        return None
    uri = getattr(entry, "model_uri", None) or ""
    if not uri or uri == "in-memory":
        return {"error": "the entry does not name the protected model, so its weights cannot be compared"}
    try:
        from .whitebox import check

        return check(ref, _owner_model(uri, cfg), module)
    except Exception as exc:  # evidence is optional: say why it is missing, keep the verdict
        return {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


def add_whitebox_evidence(verdict: Any, fp: Any, entry: RegistryEntry | None, suspect: Any,
                          config: dict[str, Any] | None = None) -> None:
    """Put :func:`whitebox_evidence` in ``verdict.evidence["whitebox"]`` when it applies: beside the black-box
    verdict, never instead of it; with the fused score and its own decision when the fingerprint calibrated one."""
    wb = whitebox_evidence(fp, entry, suspect, config)
    if wb is None:
        return
    if "error" not in wb:
        from .fusion import fused_evidence

        fused = fused_evidence(fp.meta["whitebox"], fp.calibration, verdict.score, wb)
        if fused is not None:  # one calibrated score from both kinds of evidence (fp_registry.fusion)
            wb["fused"] = fused
    verdict.evidence["whitebox"] = wb
