"""The method interface every fingerprint or watermark plugin implements, and the owner context it receives."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from .errors import NotApplicableError, ShapeMismatchError, UnknownMethodError, UsageError
from .tasks import TASKS, check_task

if TYPE_CHECKING:
    from .fingerprints import Fingerprint
    from .suspect import Suspect
    from .zoo.spec import ZooSplit


def to_tensor(value: Any) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return torch.as_tensor(np.asarray(value))


@dataclass
class Owner:
    """The protected model and what the owner knows about its inputs."""

    model: Any
    task: str
    data: torch.Tensor | None
    labels: torch.Tensor | None
    input_shape: tuple[int, ...]
    output_dim: int
    domain: tuple[float, float] | None  #: valid input range; None for latent (generator) inputs
    input_kind: str = "float32"  #: "int64" for token-id sequences (never cast to float)

    @property
    def module(self) -> nn.Module | None:
        return self.model if isinstance(self.model, nn.Module) else None

    @property
    def latent_dim(self) -> int | None:
        return int(np.prod(self.input_shape)) if self.task == "generation" else None

    def sample_inputs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Realistic inputs: owner data rows (classification / regression) or N(0, 1) latents (generation)."""
        if self.task == "generation" or self.data is None:
            x = torch.randn(n, *self.input_shape, generator=generator)
            if self.domain is not None:
                lo, hi = self.domain
                x = lo + (hi - lo) * torch.rand(n, *self.input_shape, generator=generator)
            return x
        idx = torch.randint(len(self.data), (n,), generator=generator)
        return self.data[idx].reshape(n, *self.input_shape).clone()

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """Project inputs back into the valid domain."""
        return x if self.domain is None else x.clamp(*self.domain)

    def train_xy(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Arguments for :func:`fp_registry.training.fit`: generators learn to match the data itself."""
        if self.task == "generation":
            return None, self.data
        return self.data, self.labels

    @property
    def spec(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "output_dim": self.output_dim,
                "domain": list(self.domain) if self.domain else None, "input_kind": self.input_kind}


def make_owner(model: Any, task: str, data: Any = None, labels: Any = None,
               input_shape: tuple[int, ...] | None = None) -> Owner:
    """Infer input shape, output size and domain from the model and the owner's data."""
    from .suspect import Suspect

    check_task(task)
    x, y = to_tensor(data), to_tensor(labels)
    tokens = (x is None or not x.is_floating_point()) and takes_tokens(model)
    if x is not None:
        x = x.to(torch.int64) if tokens else x.to(torch.float32)  # token ids stay ids
    if task == "generation":
        shape = tuple(input_shape) if input_shape else _latent_shape(model)
        domain = None
    else:
        if x is None and input_shape is None:
            input_shape = _module_input_shape(model)  # data-free methods (TAFA) need only the weights
        if x is None and input_shape is None:
            raise UsageError("cannot infer the input shape", "pass data=X (owner inputs) or input_shape=(...)")
        shape = tuple(input_shape) if input_shape else tuple(x.shape[1:])
        domain = (float(x.min()), float(x.max())) if x is not None else None
    probe = torch.zeros(2, *shape, dtype=torch.int64 if tokens else torch.float32) \
        if x is None or task == "generation" else x[:2].reshape(-1, *shape)
    try:
        raw = Suspect(model, name="owner").raw(probe)
    except ShapeMismatchError as exc:  # the owner's own data: the data, not a suspect, is what does not fit
        cause = str(exc.__cause__ or exc).splitlines()[0][:160]
        raise UsageError(f"the model does not accept the data's rows of shape {tuple(probe.shape[1:])}: {cause}",
                         "pass the data the model was trained on (--data / data=), or input_shape= for a "
                         "generator's latents") from exc
    out_dim = int(np.prod(raw.shape[1:])) if raw.ndim > 1 else 1
    if task == "classification" and y is not None:
        y = y.long()
    return Owner(model, task, x, y, shape, out_dim, domain, "int64" if tokens else "float32")


def takes_tokens(model: Any) -> bool:
    """True for models whose inputs are token ids: declared, a vocabulary in their config, or an embedding first."""
    if getattr(model, "input_kind", None) is not None:  # e.g. a loaded pt2 program knows its input dtype
        return model.input_kind == "int64"
    config = getattr(model, "config", None)
    vocab = config.get("vocab_size") if isinstance(config, dict) else getattr(config, "vocab_size", None)
    if vocab is not None:
        return True
    if isinstance(model, nn.Module):
        first = next((m for m in model.modules() if not list(m.children())), None)
        return isinstance(first, nn.Embedding)
    return False


def _module_input_shape(model: Any) -> tuple[int, ...] | None:
    """Input shape from a reference net's config, a loaded program's example input or a leading nn.Linear; None
    when unknown."""
    if getattr(model, "example_input_shape", None):  # set by modelio.load_pt2
        return tuple(model.example_input_shape)
    config = getattr(model, "config", None)
    if isinstance(config, dict) and "in_features" in config:
        return (int(config["in_features"]),)
    if isinstance(config, dict) and "side" in config:
        return (int(config.get("in_channels", 1)), int(config["side"]), int(config["side"]))
    if isinstance(model, nn.Module):
        first = next((m for m in model.modules() if not list(m.children())), None)
        if isinstance(first, nn.Linear):
            return (first.in_features,)
    return None


def _latent_shape(model: Any) -> tuple[int, ...]:
    if isinstance(model, nn.Module):
        for module in model.modules():
            if isinstance(module, nn.Linear):
                return (module.in_features,)
    raise ShapeMismatchError("cannot infer the generator's latent shape", "pass input_shape=(latent_dim,)")


@dataclass
class Built:
    """What a method produces: tensors grouped by file, plus JSON-able info for the manifest."""

    tensors: dict[str, dict[str, torch.Tensor]]
    info: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base class of fingerprint and watermark methods; subclasses register through ``register_methods``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: "none": needs no zoo; "calibrate": zoo only sets the threshold; "train": the verifier learns from the zoo
    zoo_use: ClassVar[str] = "calibrate"
    #: how many times a zoo built for this method repeats its train split (fresh seeds; only "train" methods gain)
    zoo_train_reps: ClassVar[int] = 1
    access: ClassVar[str] = "black-box"
    fidelity: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    default_threshold: ClassVar[float] = 0.5
    #: input dtypes the method can build queries for: "float32" (continuous) and/or "int64" (token ids)
    input_kinds: ClassVar[tuple[str, ...]] = ("float32",)
    #: decision of the fused black-box + white-box evidence (:func:`fp_registry.fusion.fused_evidence`)
    fused_rule: ClassVar[str] = "max"

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise UsageError(f"unknown setting(s) for {self.name}: {', '.join(sorted(unknown))}",
                             f"known: {', '.join(sorted(self.defaults)) or 'none'}")
        self.settings: dict[str, Any] = {**self.defaults, **settings}

    def tail_lineages(self, owner: Owner) -> int:
        """Extra homologous lineages a zoo built for this method adds to calibrate a threshold (split ``"tail"``)."""
        return 0

    def check_owner(self, owner: Owner) -> None:
        """Raise NotApplicableError when the owner model or task is out of scope."""
        if owner.task not in self.tasks:
            raise NotApplicableError(f"method {self.name} does not support task {owner.task!r} "
                                     f"(supports: {', '.join(self.tasks)})")
        self.check_input_kind(owner)

    def check_input_kind(self, owner: Owner) -> None:
        """Token-id owners need methods that search discrete inputs; gradient methods cannot reach token ids."""
        kind = getattr(owner, "input_kind", "float32")
        if kind not in self.input_kinds:
            names = {"float32": "continuous (float32)", "int64": "token-id (int64)"}
            hint = "textprobe, metav or deepcore" if kind == "int64" else "ipguard, metav, tafa or deepcore"
            raise NotApplicableError(f"method {self.name} does not support {names.get(kind, kind)} inputs "
                                     f"(supports: {', '.join(names.get(k, k) for k in self.input_kinds)})",
                                     f"use {hint}")

    @abstractmethod
    def build(self, owner: Owner, zoo: "ZooSplit | None", seed: int, progress: bool) -> Built:
        """Create the fingerprint (and train the verifier on ``zoo`` when ``zoo_use == 'train'``)."""

    @abstractmethod
    def score(self, fp: "Fingerprint", suspect: "Suspect") -> tuple[float, dict[str, Any]]:
        """Query the suspect and return a score in [0, 1] (higher = derived) and JSON-able evidence."""

    def p_value(self, fp: "Fingerprint", score: float, evidence: dict[str, Any]) -> float | None:
        """Default: empirical p-value against the calibration negatives."""
        return fp.calibration.p_value(score) if fp.calibration and math.isfinite(score) else None

    def protect(self, owner: Owner, seed: int, progress: bool, **options: Any) -> tuple[nn.Module, Built]:
        """Watermark methods embed while training: return (deployable model, key). Fingerprints do not."""
        raise NotApplicableError(f"method {self.name} is a fingerprint, not a watermark",
                                 "use fpr.fingerprint(...) for it, or method='passport' with protect")


def get_method_class(name: str) -> type[Method]:
    from .plugins import methods

    table = methods()
    if name not in table:
        raise UnknownMethodError(name, list(table))
    return table[name]
