"""Build the suspect zoo of any owner: derived models through attacks, independent models through retraining."""
from __future__ import annotations

import hashlib
import warnings
import zlib
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UsageError
from ..methods import Owner
from ..modelio import program_graph
from ..training import one_thread
from .attacks import AttackContext
from .recipes import SEED_BASE, Recipe, Step, recipes, tail_recipe
from .spec import SPLITS, TAIL, Zoo, ZooModel

DEFAULT_SIZE = 20  #: positives and negatives per split (the recipes give a few more; this caps them)
#: seed offset of each extra train replica: far above any zoo seed's block (10000 * zoo seed), so no replica's
#: model shares a seed with another replica, another split or another zoo seed's models
REP_STRIDE = 10**9
#: what to do when the owner is a program (the one-line error's hint)
PROGRAM_HINT = ("use a method that only calibrates (ipguard, deepcore) with independent reference models: --negative "
                "MODEL with 'fpreg fingerprint' or 'register', negatives=[...] in Python (the MLflow and Hub protect "
                "flows give their scenario's); or fingerprint the torch module itself in Python")


def make_context(owner: Owner, alt_data: tuple[Any, Any] | None = None) -> AttackContext:
    """Attack context of ``owner``; without ``alt_data`` the "other" data is a fixed half of the owner's data."""
    x, y = owner.data, owner.labels
    if x is None:
        raise UsageError("building a zoo needs the owner's data", "pass data=X (and labels=y) to fingerprint()")
    if alt_data is not None:
        ax = torch.as_tensor(alt_data[0])
        ax = ax.long() if owner.input_kind == "int64" else ax.float()  # token ids are never cast to float
        ay = None if alt_data[1] is None else torch.as_tensor(alt_data[1])
        ay = ay.long() if ay is not None and owner.task == "classification" else ay
    else:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(777))[len(x) // 2:]
        ax, ay = x[perm], None if y is None else y[perm]
    return AttackContext(owner.task, x, y, ax, ay, owner.input_shape, owner.output_dim, owner.latent_dim)


def plan(task: str, sizes: dict[str, Any] | None = None, holdout_families: tuple[str, ...] = (),
         train_reps: int = 1, tail_lineages: int = 0) -> list[tuple[str, Recipe, int]]:
    """(split, recipe, replica) triples; held-out families appear in the test split only.

    ``train_reps`` > 1 repeats the train split's recipes with fresh seeds (replica 1, 2, ...): more independent
    lineages and more copies to learn from, while calibration and test stay exactly as with one replica.
    ``tail_lineages`` adds that many homologous retrains with fresh seeds as split ``"tail"`` (replica i is lineage
    i), after every other model, so the other splits are built exactly as without them.
    """
    if train_reps < 1:
        raise UsageError(f"train_reps={train_reps} is not a positive count", "use 1 (the default) or more")
    out = []
    for split in SPLITS:
        pos, neg = recipes(split, task)
        if split != "test":
            pos = [r for r in pos if r.family not in holdout_families]
            neg = [r for r in neg if r.family not in holdout_families]
        n_pos, n_neg = _size(sizes, split)
        for rep in range(train_reps if split == "train" else 1):
            out += [(split, r, rep) for r in pos[:n_pos]] + [(split, r, rep) for r in neg[:n_neg]]
    if tail_lineages < 0:
        raise UsageError(f"tail_lineages={tail_lineages} is not a count", "use 0 (none) or more")
    if tail_recipe().family not in holdout_families:
        out += [(TAIL, tail_recipe(), i) for i in range(min(tail_lineages, _size(sizes, TAIL)[1]))]
    return out


def _size(sizes: dict[str, Any] | None, split: str) -> tuple[int, int]:
    value = (sizes or {}).get(split)
    if value is None:
        return 10**6, 10**6  # all recipes of the split (at least DEFAULT_SIZE each)
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def step_seed(zoo_seed: int, split: str, prefix: str) -> int:
    """A seed fixed by the zoo seed, the split and the lineage, so a shared parent is the same model."""
    return 10000 * zoo_seed + SEED_BASE[split] + zlib.crc32(prefix.encode()) % 997


class _Runner:
    """Applies recipe chains, memoising every prefix in memory and (when caching) on disk."""

    def __init__(self, owner: Owner, ctx: AttackContext, zoo_seed: int, cache: bool, key_root: str) -> None:
        from ..plugins import attacks

        self.owner, self.ctx, self.zoo_seed, self.cache, self.key_root = owner, ctx, zoo_seed, cache, key_root
        self.attacks = attacks()
        self.memo: dict[str, nn.Module] = {}

    def run(self, split: str, recipe: Recipe, rep: int = 0) -> tuple[nn.Module, list[str]]:
        model: nn.Module = self.owner.model
        key, labels = self.key_root + (f"#r{rep}" if rep else ""), []  # replica 0 keeps the one-replica keys
        for st in recipe.steps:
            seed = step_seed(self.zoo_seed, split, f"{key}/{st.label()}") + REP_STRIDE * rep
            key = f"{key}/{st.label(seed)}"
            labels.append(st.label(seed if st.attack == "retrain" else None))
            model = self._get(key, lambda parent=model, st=st, seed=seed: self._apply(parent, st, seed))
        return model, labels

    def _get(self, key: str, make: Callable[[], nn.Module]) -> nn.Module:
        if key not in self.memo:
            if self.cache:
                from ..modelio import cached_model

                self.memo[key] = cached_model(key, make)
            else:
                self.memo[key] = make()
        return self.memo[key]

    def _apply(self, parent: nn.Module, st: Step, seed: int) -> nn.Module:
        if st.attack not in self.attacks:
            raise UsageError(f"unknown attack {st.attack!r}", f"known: {', '.join(sorted(self.attacks))}")
        self.ctx.seed = seed
        torch.manual_seed(seed)
        return self.attacks[st.attack].fn(parent, self.ctx, **st.kwargs).eval()


def _key_root(owner: Owner, ctx: AttackContext) -> str:
    from ..modelio import state_digest

    h = hashlib.sha256(ctx.alt_x.contiguous().numpy().tobytes()).hexdigest()[:8]
    return f"zoo-{state_digest(owner.model)[:16]}-{h}"


def utility(model: nn.Module, ctx: AttackContext) -> dict[str, float]:
    """Accuracy / MSE / MMD on the "other" data (never the owner's training rows when it is given)."""
    from ..training import evaluate_utility

    if ctx.task == "generation":
        return evaluate_utility(model, ctx.task, None, ctx.alt_x[:256], ctx.latent_dim)
    return evaluate_utility(model, ctx.task, ctx.alt_x, ctx.alt_y)


def build_zoo(owner: Owner, *, seed: int = 0, progress: bool = True, sizes: dict[str, Any] | None = None,
              holdout_families: tuple[str, ...] = (), cache: bool = True, name: str | None = None,
              alt_data: tuple[Any, Any] | None = None, train_reps: int = 1, tail_lineages: int = 0) -> Zoo:
    """Derived (positive) and independent (negative) models of ``owner`` in disjoint train/calibration/test splits.

    ``sizes`` caps positives and negatives per split (``{"test": 10}`` or ``{"test": (10, 12)}``);
    ``holdout_families`` keeps those families out of train and calibration; ``alt_data=(X, y)`` is data disjoint
    from the owner's (default: half of the owner's data); ``name`` is the lineage root (default ``owner``);
    ``train_reps`` builds the train split that many times with fresh seeds (replica r's names start ``name#rR``);
    ``tail_lineages`` adds that many homologous retrains as split ``"tail"`` (see :func:`plan`).
    """
    from tqdm.auto import tqdm

    if owner.module is None:
        raise UsageError("building a zoo needs the owner as a torch module", "load it with fp_registry.load_model")
    if program_graph(owner.module) is not None:  # before any member: the attacks would fail one by one, some with tracebacks
        raise UsageError("cannot build a reference zoo from a torch.export program (.pt2): it cannot be fine-tuned, "
                         "re-initialised or retrained", PROGRAM_HINT)
    ctx = make_context(owner, alt_data)
    runner = _Runner(owner, ctx, seed, cache, _key_root(owner, ctx))
    members: list[ZooModel] = []
    with one_thread():
        steps = plan(owner.task, sizes, holdout_families, train_reps, tail_lineages)
        for split, recipe, rep in tqdm(steps, desc="zoo", unit="model", disable=not progress):
            root = (name or "owner") + (f"#r{rep}" if rep else "")
            try:
                model, labels = runner.run(split, recipe, rep)
            except (ValueError, RuntimeError) as exc:  # e.g. permutation of an architecture we cannot parse
                warnings.warn(f"zoo: skipped {'/'.join(s.label() for s in recipe.steps)}: {exc}", stacklevel=2)
                continue
            members.append(ZooModel("/".join([root, *labels]), model, recipe.derived, recipe.family,
                                    split, utility(model, ctx), rep))
    return Zoo(members)
