"""The default zoo recipes: chains of attacks per split, with split-specific settings so splits never overlap."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: seeds of split s start at SEED_BASE[s] (+ 10000 * the zoo seed), so no two splits share a trained model
SEED_BASE = {"train": 1000, "calibration": 2000, "test": 3000, "tail": 4000}


@dataclass(frozen=True)
class Step:
    """One attack with its settings; ``seed`` is filled in by the builder."""

    attack: str
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.settings)

    def label(self, seed: int | None = None) -> str:
        parts = [v if isinstance(v, str) else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in self.settings]
        if seed is not None:
            parts.append(f"seed={seed}")
        return f"{self.attack}({','.join(parts)})"


def step(attack: str, **settings: Any) -> Step:
    return Step(attack, tuple(settings.items()))


@dataclass(frozen=True)
class Recipe:
    """A chain of steps applied to the owner; independent when it starts with ``retrain``."""

    steps: tuple[Step, ...]
    family: str
    derived: bool
    needs: tuple[str, ...] = field(default=())  #: tasks the recipe is limited to (empty: all)


# Split-specific settings: (fine-tune lrs/epochs, prune ratios, noise sigmas, distillation steps).
_SETTINGS: dict[str, dict[str, Any]] = {
    "train": {"ft": [(1e-3, 3), (5e-4, 6)], "prune": [0.3, 0.6], "pft": [0.6, 0.75], "fprune": 0.4,
              "noise": [0.02, 0.08, 0.15], "kd": 250, "t": 2.0, "perm": 1},
    "calibration": {"ft": [(7e-4, 4), (2e-3, 2)], "prune": [0.4, 0.7], "pft": [0.5, 0.7], "fprune": 0.6,
                    "noise": [0.03, 0.07, 0.12], "kd": 350, "t": 3.0, "perm": 2},
    "test": {"ft": [(1e-3, 5), (3e-3, 3)], "prune": [0.2, 0.5, 0.8], "pft": [0.8], "fprune": 0.5,
             "noise": [0.01, 0.05, 0.1], "kd": 300, "t": 4.0, "perm": 3},
}

_QUANT = {  # int8 / fp16 are deterministic, so only the test split applies them to the owner directly
    "train": [(step("finetune", layers="all", lr=1e-3, epochs=2), step("int8")),
              (step("prune", ratio=0.25), step("fp16"))],
    "calibration": [(step("noise", sigma=0.02), step("int8")),
                    (step("finetune", layers="last", lr=1e-3, epochs=2), step("fp16"))],
    "test": [(step("int8"),), (step("fp16"),)],
}


def derived_recipes(split: str) -> list[Recipe]:
    """About 20 positives per split, settings disjoint from the other splits."""
    s = _SETTINGS[split]
    out: list[Recipe] = []
    (lr0, ep0), (lr1, ep1) = s["ft"]
    out += [Recipe((step("finetune", layers="all", lr=lr0, epochs=ep0),), "finetune", True),
            Recipe((step("prune", ratio=s["prune"][0]),), "prune", True),
            Recipe((step("noise", sigma=s["noise"][0]),), "noise", True),
            Recipe((step("distill", arch="same", steps=s["kd"], temperature=s["t"]),), "distill", True),
            Recipe((step("extract", arch="same", steps=s["kd"]),), "extract", True, ("classification",)),
            Recipe((step("permute", k=s["perm"]),), "permute", True),
            Recipe((step("finetune", layers="last", lr=lr1, epochs=ep1),), "finetune", True),
            Recipe((step("prune_finetune", ratio=s["pft"][0], lr=lr0, epochs=2),), "stacked", True),
            Recipe((step("fineprune", ratio=s["fprune"], lr=lr0, epochs=2),), "fineprune", True),
            Recipe((step("finetune", layers="all", lr=lr1, epochs=ep1, data="alt"),), "finetune", True),
            Recipe((step("distill", arch="small", steps=s["kd"], temperature=s["t"]),), "distill", True),
            Recipe((step("extract", arch="small", steps=s["kd"]),), "extract", True, ("classification",)),
            Recipe((step("finetune", layers="last", lr=lr0, epochs=ep0, data="alt"),), "finetune", True),
            Recipe((step("permute", k=s["perm"]), step("finetune", layers="all", lr=lr0, epochs=2)), "stacked", True)]
    out += [Recipe(chain, "quantize", True) for chain in _QUANT[split]]
    out += [Recipe((step("prune", ratio=r),), "prune", True) for r in s["prune"][1:]]
    out += [Recipe((step("noise", sigma=v),), "noise", True) for v in s["noise"][1:]]
    out += [Recipe((step("prune_finetune", ratio=r, lr=lr1, epochs=2),), "stacked", True) for r in s["pft"][1:]]
    out += [Recipe((step("prune", ratio=s["prune"][0]), step("finetune", layers="all", lr=lr1, epochs=2)),
                   "stacked", True),
            Recipe((step("finetune", layers="all", lr=lr0, epochs=ep0), step("noise", sigma=s["noise"][0])),
                   "stacked", True)]
    return out


def independent_recipes(split: str) -> list[Recipe]:
    """About 20 negatives per split: 4 homologous retrains, reused as parents of cheap modified negatives."""
    s = _SETTINGS[split]
    lr0, ep0 = s["ft"][0]
    homo = [step("retrain", data="owner", epochs=20, k=i) for i in range(4)]
    out = [Recipe((h,), "homologous", False) for h in homo]
    out += [Recipe((step("retrain", data="alt", epochs=20, k=i),), "other-data", False) for i in range(2)]
    out += [Recipe((step("retrain", arch="mlp", hidden=h, epochs=20),), "other-arch", False)
            for h in ("256", "64-32")]
    out += [Recipe((homo[0], step("distill", arch="same", steps=s["kd"], temperature=s["t"])),
                   "distilled-independent", False),
            Recipe((homo[1], step("distill", arch="small", steps=s["kd"], temperature=s["t"])),
                   "distilled-independent", False)]
    mods = [step("finetune", layers="all", lr=lr0, epochs=ep0), step("prune", ratio=s["prune"][0]),
            step("int8"), step("noise", sigma=s["noise"][1]), step("permute", k=s["perm"]), step("fp16"),
            step("prune_finetune", ratio=s["pft"][0], lr=lr0, epochs=2), step("fineprune", ratio=s["fprune"]),
            step("finetune", layers="last", lr=lr0, epochs=ep0, data="alt")]
    out += [Recipe((homo[i % 4], m), "homologous-modified", False) for i, m in enumerate(mods)]
    out.append(Recipe((homo[2], step("extract", arch="same", steps=s["kd"])), "homologous-modified", False,
                      ("classification",)))
    out.append(Recipe((homo[3], step("noise", sigma=s["noise"][2])), "homologous-modified", False,
                      ("regression", "generation")))
    return out


def tail_recipe() -> Recipe:
    """The homologous retrain that the ``tail`` split repeats with fresh seeds (one replica per lineage)."""
    return Recipe((step("retrain", data="owner", epochs=20),), "homologous", False)


def recipes(split: str, task: str) -> tuple[list[Recipe], list[Recipe]]:
    """(derived, independent) recipes of ``split`` that apply to ``task``."""
    keep = lambda r: not r.needs or task in r.needs  # noqa: E731
    return [r for r in derived_recipes(split) if keep(r)], [r for r in independent_recipes(split) if keep(r)]


#: families whose models share the owner's architecture (for the same-architecture FPR)
SAME_ARCH_FAMILIES = ("homologous", "homologous-modified", "other-data")
