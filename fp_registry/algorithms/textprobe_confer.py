"""TextProbe's conferrable points: random-id rows whose owner label the zoo's copies share and independents do not.

Why: a label-only extraction (a student trained on the owner's top-1 answers) matches the owner's *labels* but
not its log-prob profile, so TextProbe's soft score ranks it with independent models. Its labels still carry
the owner's idiosyncrasies on inputs outside the language, which is what conferrable examples catch
(Lukas et al., "Deep neural network fingerprinting by conferrable adversarial examples", ICLR 2021). Here the
candidates are sampled, not optimised: token ids are discrete, and selection alone already finds them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fp_registry.suspect import Suspect

#: a z-score's spread floor: a statistic on which every reference model scores the same has no scale of its own
MIN_SPREAD = 0.01


@dataclass(frozen=True)
class Reference:
    """Mean and spread of both statistics over reference independents that took no part in the selection."""

    soft_mean: float
    soft_sd: float
    agree_mean: float
    agree_sd: float

    def z(self, soft: float, agree: float) -> tuple[float, float]:
        return (soft - self.soft_mean) / self.soft_sd, (agree - self.agree_mean) / self.agree_sd

    def to_dict(self) -> dict[str, float]:
        return {"soft_mean": self.soft_mean, "soft_sd": self.soft_sd, "agree_mean": self.agree_mean,
                "agree_sd": self.agree_sd}


def usable(zoo: Any) -> bool:
    """A train split with copies to confer to and enough independents to split into selection and reference."""
    return zoo is not None and len(getattr(zoo, "positives", [])) >= 2 and len(getattr(zoo, "negatives", [])) >= 4


def candidate_rows(n: int, length: int, vocab_size: int, gen: torch.Generator) -> torch.Tensor:
    """Random-id rows: half uniform over every id at every position, half framed as [CLS] ... [SEP].

    Why two families and no owner sentences: the rows must lie outside the language, where a model's answer is
    its own quirk and not the grammar's; which family carries a copy's quirks depends on how it was made, and
    the selection (train split only) decides. Every position varies in the first family because a causal LM
    answers for the last one.
    """
    from fp_registry.text import random_tokens

    half = n // 2
    return torch.cat([torch.randint(vocab_size, (half, length), generator=gen),
                      random_tokens(n - half, length, vocab_size, gen)])


def select(owner: Suspect, zoo: Any, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The ``k`` most conferrable candidates, the owner's labels on them, and the unused reference independents.

    Conferrability (Lukas et al.): mean agreement of the train-split copies with the owner times one minus that
    of the selection independents. Half the independent *lineages* are held back so the reference statistics
    are not biased by the selection: on the selected rows the selection independents agree with the owner
    ~never, and so would a pruned or fine-tuned variant of one of them.
    """
    own = owner.labels(candidates)
    chosen, held_back = split_lineages(zoo.negatives)
    copies = _agreement(zoo.positives, candidates, own).mean(0)
    independents = _agreement(chosen, candidates, own).mean(0)
    conf = copies * (1 - independents)
    idx = torch.argsort(conf, descending=True, stable=True)[:k]
    return candidates[idx], own[idx], [z.model for z in held_back]


def split_lineages(models: list[Any]) -> tuple[list[Any], list[Any]]:
    """Alternate whole lineages between two halves; a zoo name's first step (``scenario/retrain(...)``) is its root."""
    roots: dict[str, int] = {}
    for z in models:
        roots.setdefault("/".join(str(z.name).split("/")[:2]), len(roots))
    halves: tuple[list[Any], list[Any]] = ([], [])
    for z in models:
        halves[roots["/".join(str(z.name).split("/")[:2])] % 2].append(z)
    return halves


def _agreement(models: list[Any], x: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    return torch.stack([(Suspect(z.model, z.name).labels(x) == own).float() for z in models])


def reference(stats: list[tuple[float, float]]) -> Reference:
    """Mean and spread (floored at ``MIN_SPREAD``) of (soft score, agreement) over the held-back independents."""
    t = torch.tensor(stats, dtype=torch.float64)
    sd = t.std(0, unbiased=True).clamp_min(MIN_SPREAD) if len(t) > 1 else torch.full((2,), MIN_SPREAD)
    mean = t.mean(0)
    return Reference(float(mean[0]), float(sd[0]), float(mean[1]), float(sd[1]))
