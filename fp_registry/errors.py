"""Error hierarchy: every error carries a one-line hint that says what to do next."""
from __future__ import annotations


class FpRegistryError(Exception):
    """Base class; ``hint`` tells the user the next step."""

    hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        """Message plus hint on one line, for the CLI."""
        msg = str(self).replace("\n", " ")
        return f"{msg} ({self.hint})" if self.hint else msg


class UsageError(FpRegistryError):
    """The caller asked for something that cannot work (bad option, unknown task)."""


class UnknownMethodError(UsageError):
    """No plugin registered a method of that name."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"unknown method {name!r}", f"available: {', '.join(sorted(available)) or 'none'}")
        self.name = name


class UnknownBackendError(UsageError):
    """No plugin registered a backend for that URI scheme."""

    def __init__(self, uri: str, available: list[str]) -> None:
        super().__init__(f"no backend for {uri!r}", f"known schemes: {', '.join(sorted(available)) or 'none'}")
        self.uri = uri


class ModelLoadError(FpRegistryError):
    """A model could not be loaded (unknown format, corrupt file, unsafe format)."""

    hint = "pass a .pt2 program, a safetensors model directory, or an in-memory model"


class UnsafeFormatError(ModelLoadError):
    """The file is a pickle; loading it needs an explicit opt-in."""

    hint = "convert it to safetensors, or pass allow_pickle=True / --allow-pickle to load it with weights_only"


class ShapeMismatchError(FpRegistryError):
    """The suspect's input or output shape does not fit the fingerprint."""

    hint = "this fingerprint does not apply to this suspect; check that both models solve the same task"


class ArtifactError(FpRegistryError):
    """A fingerprint artifact is missing, truncated, tampered with or of an unknown version."""

    hint = "re-create the fingerprint with 'fpreg fingerprint', or restore it from the registry"


class BackendError(FpRegistryError):
    """A registry backend failed (unreachable server, missing permission)."""

    def __init__(self, message: str, uri: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint or "check that the registry is running and reachable, then retry")
        self.uri = uri


class MissingExtraError(FpRegistryError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed", f"install it with: pip install 'fp-registry[{extra}]'")


class VerificationError(FpRegistryError):
    """A verifier failed while checking a suspect."""

    def __init__(self, message: str, entry_id: str = "", plugin: str = "") -> None:
        super().__init__(message, "run again with FP_REGISTRY_DEBUG=1 for the traceback")
        self.entry_id = entry_id
        self.plugin = plugin


class NotApplicableError(FpRegistryError):
    """The method cannot be used for this owner model or task (e.g. TAFA on a GELU network)."""

    hint = "choose another method; 'fpreg methods' lists which tasks each supports"
