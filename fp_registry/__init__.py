"""fp-registry: fingerprint your models, and find their copies in MLflow and on the Hugging Face Hub."""
from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl

__all__ = [
    "hookimpl", "fingerprint", "load_fingerprint", "protect", "load_model", "Fingerprint", "Verdict",
    "RegistryEntry", "UploadEvent", "register_model", "check_suspect", "handle_upload", "get_backend",
    "FpRegistryError", "__version__",
]

_LAZY = {
    "fingerprint": ".fingerprints", "load_fingerprint": ".fingerprints", "protect": ".fingerprints",
    "Fingerprint": ".fingerprints", "load_model": ".loading", "Verdict": ".records", "RegistryEntry": ".records",
    "UploadEvent": ".records", "register_model": ".pipeline", "check_suspect": ".pipeline",
    "handle_upload": ".pipeline", "get_backend": ".backends", "FpRegistryError": ".errors",
}


def __getattr__(name: str) -> Any:
    # Lazy: `fpreg --help` and plugin imports must not pay for torch.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("fp-registry")
        except PackageNotFoundError:
            return "0.0.0+local"
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fp_registry' has no attribute {name!r}")
