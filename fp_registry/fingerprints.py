"""The Fingerprint object and the public ``fingerprint`` / ``load_fingerprint`` / ``protect`` functions."""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .artifact import read_artifact, write_artifact
from .calibration import Calibration, calibrate
from .errors import UsageError
from .methods import Built, Method, Owner, get_method_class, make_owner
from .records import Verdict
from .suspect import Suspect
from .zoo.spec import Zoo, ZooModel, ZooSplit, as_zoo_models


def _version() -> str:
    from . import __version__

    return __version__


class Fingerprint:
    """Secret queries (or a watermark key) plus the verifier and its calibration. Never log its tensors."""

    def __init__(self, method: str, task: str, settings: dict[str, Any], spec: dict[str, Any], built: Built,
                 calibration: Calibration | None = None, meta: dict[str, Any] | None = None,
                 digest: str = "") -> None:
        self.method = method
        self.task = task
        self.settings = settings
        self.spec = spec
        self.tensors = built.tensors
        self.info = built.info
        self.calibration = calibration
        self.meta = meta or {}
        self.digest = digest
        self._method: tuple[dict[str, Any], Method] | None = None  # (settings it was made from, object)
        self._prepared: dict[str, Any] = {}

    def __repr__(self) -> str:  # deliberately shows no tensor values: fingerprints are secrets
        return f"Fingerprint(method={self.method!r}, task={self.task!r}, digest={self.digest[:12]!r})"

    @property
    def threshold(self) -> float:
        if self.calibration is not None:
            return self.calibration.threshold
        return float(self.info.get("threshold", self.method_object().default_threshold))

    def method_object(self) -> Method:
        """The method instance for these settings, made once per fingerprint (plugin lookup is not free)."""
        if self._method is None or self._method[0] != self.settings:
            self._method = (dict(self.settings), get_method_class(self.method)(**self.settings))
        return self._method[1]

    def prepared(self, key: str, make: Callable[[], Any]) -> Any:
        """A value derived from the (immutable) tensors, e.g. numpy copies of a verifier, made once and reused.

        Why: on a small model, re-deriving such copies on every verification costs more than the suspect's
        forward pass (the benchmark's verify/forward ratio).
        """
        try:
            return self._prepared[key]
        except KeyError:
            value = self._prepared[key] = make()
            return value

    def verify(self, suspect: Any, *, batch_size: int = 1024, allow_pickle: bool = False) -> Verdict:
        """Query ``suspect`` (module, callable or URI) and return a calibrated verdict.

        ``Verdict.seconds`` covers the whole check after the suspect is loaded: queries, score, p-value.
        """
        s = Suspect(suspect, "", batch_size, allow_pickle)
        start = time.perf_counter()
        method = self.method_object()
        score, evidence = method.score(self, s)
        score = float(score)
        threshold = float(self.threshold)
        p_value = method.p_value(self, score, evidence)
        return Verdict.checked(score, threshold, p_value, s.n_queries, self.method, time.perf_counter() - start,
                               evidence, s.name)

    def manifest(self) -> dict[str, Any]:
        return {"method": self.method, "task": self.task, "settings": self.settings, "spec": self.spec,
                "info": self.info, "calibration": self.calibration.to_dict() if self.calibration else None,
                "meta": self.meta}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact atomically: ``fingerprint.json`` plus ``.safetensors`` files."""
        self.digest = write_artifact(path, self.manifest(), self.tensors)
        return Path(path)


def load_fingerprint(path: str | os.PathLike[str], expected_digest: str | None = None) -> Fingerprint:
    """Load an artifact, checking every file digest (and ``expected_digest`` from a registry, if given)."""
    manifest, groups = read_artifact(path, expected_digest)
    return Fingerprint(manifest["method"], manifest["task"], manifest.get("settings", {}), manifest["spec"],
                       Built(groups, manifest.get("info", {})), Calibration.from_dict(manifest.get("calibration")),
                       manifest.get("meta", {}), manifest["digest"])


def fingerprint(model: Any, method: str = "metav", task: str = "classification", data: Any = None,
                labels: Any = None, seed: int = 0, positives: list[Any] | None = None,
                negatives: list[Any] | None = None, input_shape: tuple[int, ...] | None = None,
                zoo: Zoo | None = None, target_fpr: float = 0.01, progress: bool = True, whitebox: bool = False,
                train_reps: int | None = None, **settings: Any) -> Fingerprint:
    """Fingerprint ``model`` with ``method``; builds and caches a zoo when the method needs one and none is given.

    ``train_reps``: how many times that zoo repeats its train split with fresh seeds (default: the method's
    ``zoo_train_reps``); more independent lineages for a method that learns from them (MetaV, README).

    Example:
        >>> fp = fingerprint(model, method="ipguard", task="classification", data=X, labels=y)  # doctest: +SKIP
        >>> fp.verify(suspect).is_match  # doctest: +SKIP
    """
    from .loading import load_model

    torch.manual_seed(seed)
    model = load_model(model) if isinstance(model, str) else model
    owner = make_owner(model, task, data, labels, input_shape)
    m = get_method_class(method)(**settings)
    m.check_owner(owner)
    reps = m.zoo_train_reps if train_reps is None else train_reps
    tail_n = m.tail_lineages(owner) if whitebox else 0  # the tail only calibrates the fused decision
    train, cal, tail = _zoo_splits(m, owner, positives, negatives, zoo, seed, progress, reps, tail_n)
    built = m.build(owner, train, seed, progress)
    fp = _new_fingerprint(m, owner, built, seed)
    if cal is not None and len(cal):
        fp.calibration = calibrate_fingerprint(fp, cal, target_fpr)
    if whitebox:
        _add_whitebox_reference(fp, owner, cal, negatives, seed, tail)
    return fp


def _add_whitebox_reference(fp: Fingerprint, owner: Owner, cal: ZooSplit | None, negatives: list[Any] | None,
                            seed: int, tail: list[ZooModel] | None = None) -> None:
    """Nulls of the white-box statistics from the calibration independents (see :mod:`fp_registry.whitebox`).

    Why calibration models: they are never the suspects of an evaluation, and a check needs a null of models
    known to be independent; with none, or an owner without weights, no reference is stored.
    """
    from torch import nn

    from .whitebox import reference

    models = [z.model for z in cal.negatives] if cal is not None else list(negatives or [])
    models = [m for m in models if isinstance(m, nn.Module)]
    if isinstance(owner.model, nn.Module) and len(models) >= 2:
        fp.meta["whitebox"] = reference(owner.model, models, seed=seed, input_shape=owner.input_shape)
        _add_fused_calibration(fp, owner, cal, tail or [])


def _add_fused_calibration(fp: Fingerprint, owner: Owner, cal: ZooSplit | None, tail: list[ZooModel]) -> None:
    """Threshold of the fused black-box + white-box score (:mod:`fp_registry.fusion`), from the same split; the
    ``tail`` lineages join only the calibration of the strata rule's stratum S."""
    from torch import nn

    from .fusion import calibrate_fused

    members = list(cal.negatives) + list(cal.positives) if cal is not None else []
    if fp.calibration is None or not members or not all(isinstance(z.model, nn.Module) for z in members):
        return  # black-box scores of these very models are needed, in calibration order
    m = fp.method_object()
    tail_scores = [(z.model, m.score(fp, Suspect(z.model, z.name))[0]) for z in tail if m.fused_rule == "strata"]
    fp.meta["whitebox"]["fused"] = calibrate_fused(fp.meta["whitebox"], fp.calibration, owner.model,
                                                   [z.model for z in cal.negatives], [z.model for z in cal.positives],
                                                   fp.calibration.target_fpr, rule=m.fused_rule, tail=tail_scores)


def _new_fingerprint(m: Method, owner: Owner, built: Built, seed: int) -> Fingerprint:
    from .modelio import state_digest

    meta = {"owner_digest": state_digest(owner.model), "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "library_version": _version(), "seed": seed}
    return Fingerprint(m.name, owner.task, m.settings, owner.spec, built, None, meta)


def calibrate_fingerprint(fp: Fingerprint, split: ZooSplit, target_fpr: float = 0.01) -> Calibration:
    """Score a calibration split and pick the threshold; positives only move it within the gap."""
    m = fp.method_object()
    neg = [m.score(fp, Suspect(z.model, z.name))[0] for z in split.negatives]
    pos = [m.score(fp, Suspect(z.model, z.name))[0] for z in split.positives]
    return calibrate(neg, pos, target_fpr, m.default_threshold, int(m.settings.get("skip_positives", 0)))


def _zoo_splits(m: Method, owner: Owner, positives: list[Any] | None, negatives: list[Any] | None,
                zoo: Zoo | None, seed: int, progress: bool,
                train_reps: int = 1, tail: int = 0) -> tuple[ZooSplit | None, ZooSplit | None, list[ZooModel]]:
    """Train and calibration splits, and the first ``tail`` lineages of the zoo's tail (none without a zoo)."""
    if m.zoo_use == "none":
        return None, None, []
    if positives is not None or negatives is not None:
        pos = as_zoo_models(list(positives or []), True, "given")
        neg = as_zoo_models(list(negatives or []), False, "given")
        if m.zoo_use == "calibrate":
            return None, ZooSplit(pos, neg), []
        if len(pos) < 2 or len(neg) < 2:  # half trains, half calibrates: a verifier needs both kinds in each
            raise UsageError(f"{m.name} trains its verifier on derived and independent models: it needs at least "
                             f"two of each, got {len(pos)} derived and {len(neg)} independent",
                             "pass more positives= and negatives=, leave both out to build a zoo, or use a method "
                             "that only calibrates (ipguard, deepcore)")
        return ZooSplit(pos[0::2], neg[0::2]), ZooSplit(pos[1::2], neg[1::2]), []
    if zoo is None and m.zoo_use == "calibrate" and owner.data is None:
        import warnings  # data-free methods still work; only the calibrated threshold is missing

        warnings.warn(f"no owner data and no zoo: {m.name} uses its default threshold "
                      f"{m.default_threshold} (pass data= or negatives= to calibrate)", stacklevel=3)
        return None, None, []
    if zoo is None:
        from .zoo.builder import build_zoo

        zoo = build_zoo(owner, seed=seed, progress=progress, train_reps=train_reps, tail_lineages=tail)
    return zoo.split("train"), zoo.split("calibration"), zoo.tail(tail)


def protect(model: Any, method: str = "passport", task: str = "classification", data: Any = None,
            labels: Any = None, seed: int = 0, progress: bool = True, **options: Any) -> tuple[Any, Fingerprint]:
    """Embed a watermark while training; return the deployable model and its private key (a Fingerprint)."""
    from .loading import load_model

    model = load_model(model) if isinstance(model, str) else model
    owner = make_owner(model, task, data, labels)
    cls = get_method_class(method)
    m = cls(**{k: v for k, v in options.items() if k in cls.defaults})
    m.check_owner(owner)
    deployed, built = m.protect(owner, seed, progress, **{k: v for k, v in options.items() if k not in cls.defaults})
    return deployed, _new_fingerprint(m, make_owner(deployed, task, data, labels), built, seed)


__all__ = ["Fingerprint", "fingerprint", "load_fingerprint", "protect", "calibrate_fingerprint", "ZooModel"]
