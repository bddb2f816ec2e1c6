"""Frozen records that flow through the pipeline: verdicts, registry entries, upload events."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def _jsonable(value: Any) -> Any:
    """Turn floats like NaN and numpy scalars into plain JSON values."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Verdict:
    """The answer to "is this suspect derived from the owner's model?"."""

    score: float
    threshold: float
    is_match: bool
    p_value: float | None
    n_queries: int
    method: str
    seconds: float
    evidence: dict[str, Any] = field(default_factory=dict)
    status: str = "checked"  #: checked | skipped | error
    entry_id: str = ""
    suspect: str = ""

    @property
    def label(self) -> str:
        """One word for tags and tables: match, clean, skipped or error."""
        if self.status != "checked":
            return self.status
        return "match" if self.is_match else "clean"

    def to_dict(self) -> dict[str, Any]:
        d = _jsonable(dataclasses.asdict(self))
        d["verdict"] = self.label
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def checked(cls, score: float, threshold: float, p_value: float | None, n_queries: int, method: str,
                seconds: float, evidence: dict[str, Any], suspect: str = "") -> "Verdict":
        """``Verdict(score, threshold, score >= threshold, ...)`` with status "checked", built for ``fp.verify``.

        Why not the generated ``__init__``: a frozen dataclass sets each of its eleven fields through
        ``object.__setattr__``; one dict literal is cheaper, which a tiny model's verify/forward ratio shows.
        The same ``__dict__`` results (fields in order; a test compares both constructions).
        """
        verdict = object.__new__(cls)
        object.__setattr__(verdict, "__dict__", {
            "score": score, "threshold": threshold, "is_match": score >= threshold, "p_value": p_value,
            "n_queries": n_queries, "method": method, "seconds": seconds, "evidence": evidence,
            "status": "checked", "entry_id": "", "suspect": suspect})
        return verdict

    @classmethod
    def skipped(cls, reason: str, method: str = "", entry_id: str = "", suspect: str = "") -> "Verdict":
        return cls(float("nan"), float("nan"), False, None, 0, method, 0.0, {"reason": reason},
                   "skipped", entry_id, suspect)

    @classmethod
    def error(cls, reason: str, method: str = "", entry_id: str = "", suspect: str = "") -> "Verdict":
        return cls(float("nan"), float("nan"), False, None, 0, method, 0.0, {"error": reason},
                   "error", entry_id, suspect)


@dataclass(frozen=True)
class RegistryEntry:
    """A protected model version as a backend stores it: where the model is and its fingerprint."""

    entry_id: str
    model_uri: str
    method: str
    task: str
    digest: str
    fingerprint_path: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RegistryEntry":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class UploadEvent:
    """A new model upload seen by a hook: an MLflow model version or a Hub commit."""

    source: str  #: "mlflow" | "hf" | "scan" | ...
    name: str
    version: str
    model_uri: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Idempotency key: one check per (source, name, version)."""
        return f"{self.source}:{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UploadEvent":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
