"""Zoo records: attacks, lineage-named suspect models and the train / calibration / test splits."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from torch import nn

SPLITS = ("train", "calibration", "test")
#: extra homologous lineages that only calibrate a threshold (``build_zoo(tail_lineages=...)``); never suspects
TAIL = "tail"


@dataclass(frozen=True)
class AttackSpec:
    """A registered model transformation; ``derived`` is False for recipes that make independent models."""

    name: str
    fn: Callable[..., nn.Module]
    family: str
    derived: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ZooModel:
    """One suspect of the zoo, named by lineage (``digits-mlp/finetune(all,lr=1e-3)/prune(0.5)``)."""

    name: str
    model: Any
    derived: bool
    family: str
    split: str = "test"
    utility: dict[str, float] = field(default_factory=dict)
    replica: int = 0  #: which repeat of the train split built it (``build_zoo(train_reps=...)``)


@dataclass
class ZooSplit:
    """Derived (positive) and independent (negative) models of one split."""

    positives: list[ZooModel] = field(default_factory=list)
    negatives: list[ZooModel] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positives) + len(self.negatives)

    def replicas(self, n: int) -> "ZooSplit":
        """This split's members of train replicas ``0 .. n-1`` only (see :meth:`Zoo.replicas`)."""
        return ZooSplit([m for m in self.positives if m.replica < n], [m for m in self.negatives if m.replica < n])


@dataclass
class Zoo:
    """All members; ``zoo.split("train")`` gives one split."""

    members: list[ZooModel]

    def replicas(self, n: int) -> "Zoo":
        """The zoo as built with ``train_reps=n``: the train split's replicas ``0 .. n-1`` only, other splits whole."""
        return Zoo([m for m in self.members if m.split != "train" or m.replica < n])

    def calibrate_on_replicas(self, first: int) -> "Zoo":
        """Train replicas ``first`` and up moved to the calibration split (``fpreg evaluate --calibration-reps``).

        Why: a threshold set on four homologous lineages often sits below the most owner-like of the test split's
        four (benchmarks/results/deepcore.md, "Stop 22"). Replicas of the train recipes with fresh seeds are
        lineages no method learns from; moved here they only add calibration models. The test split is untouched.
        """
        return Zoo([replace(m, split="calibration") if m.split == "train" and m.replica >= first else m
                    for m in self.members])

    def tail(self, n: int) -> list[ZooModel]:
        """The first ``n`` lineages of the ``"tail"`` split (``build_zoo(tail_lineages=...)``), in lineage order."""
        return sorted((m for m in self.members if m.split == TAIL and m.replica < n), key=lambda m: m.replica)

    def split(self, name: str) -> ZooSplit:
        return ZooSplit([m for m in self.members if m.split == name and m.derived],
                        [m for m in self.members if m.split == name and not m.derived])


def as_zoo_models(models: list[Any], derived: bool, split: str) -> list[ZooModel]:
    """Wrap user-given positives / negatives (modules, callables, (name, model) pairs or ZooModels)."""
    out = []
    for i, m in enumerate(models):
        if isinstance(m, ZooModel):
            out.append(m)
        elif isinstance(m, tuple) and len(m) == 2:
            out.append(ZooModel(str(m[0]), m[1], derived, "given", split))
        else:
            out.append(ZooModel(f"{'derived' if derived else 'independent'}-{i}", m, derived, "given", split))
    return out
