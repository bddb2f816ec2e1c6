"""DeepCore's core-point selection: look-alike references, the candidate ranking, and the single-label guard."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fp_registry.errors import NotApplicableError
from fp_registry.methods import Owner


def homologous_references(owner: Owner, zoo: Any, n: int, epochs: int, seed: int) -> tuple[list[Any], str]:
    """Independent look-alikes of the owner: the zoo split's negatives, else ``n`` trained here, else none.

    Why trained with the owner's *true* labels only: a model trained on the owner's predictions would be a
    label-extraction copy (derived), and selecting points its copies disagree on would defeat the method.
    """
    negatives = list(getattr(zoo, "negatives", None) or [])
    if negatives:
        return [z.model for z in negatives], "independent models of the zoo's train split"
    if n <= 0 or owner.data is None or owner.labels is None or owner.module is None:
        return [], ""
    from fp_registry.training import fit, reinitialise

    x = owner.data.reshape(len(owner.data), *owner.input_shape)
    refs = []
    for i in range(n):
        ref_seed = seed + 7919 * (i + 1)  # never the owner's own seed
        refs.append(fit(reinitialise(owner.module, ref_seed), "classification", x, owner.labels, epochs=epochs,
                        lr=2e-3, seed=ref_seed))
    return refs, "models trained here on the owner's data (other seeds)"


def reference_probs(models: list[Any], x: torch.Tensor, n_classes: int) -> list[torch.Tensor]:
    """Each reference model's probabilities on the candidates (black-box queries)."""
    from fp_registry.suspect import Suspect

    return [Suspect(m).outputs(x, "classification", n_classes) for m in models]


def candidate_ranking(own: torch.Tensor, neg: list[torch.Tensor], pos: list[torch.Tensor],
                      label_weight: float = 1.0, worst: bool = False) -> torch.Tensor:
    """Candidate indices, best first: high agreement of derived references, low agreement of homologous ones.

    Agreement of one reference on a candidate is ``label_weight`` x [same top-1 label as the owner] plus the
    probability cosine (the cosine breaks ties between label levels). Homologous agreement is the mean over
    references, or with ``worst`` the highest one (the homologous model closest to the owner decides); derived
    agreement is always the mean. Without derived references only the homologous term counts (``select="least"``
    uses the mean cosine alone, as it always did).
    Why derived references (train split only): points that homologous models merely disagree on include points
    where copies drift too (pruning, distillation into a smaller net); those are useless for identification.
    """
    def agreement(refs: list[torch.Tensor]) -> torch.Tensor:
        label = torch.stack([(p.argmax(1) == own.argmax(1)).float() for p in refs])
        return label_weight * label + torch.stack([F.cosine_similarity(p, own, dim=1) for p in refs])

    neg_agree = agreement(neg)
    score = -(neg_agree.max(0).values if worst else neg_agree.mean(0))
    if pos:
        score = score + agreement(pos).mean(0)
    return score.argsort(descending=True, stable=True)


def with_two_labels(ranking: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` of ``ranking``; if the owner gives them all one label, its best tenth of other labels joins.

    Why: on points of a single owner label, kappa is 0 for every suspect, the owner itself included (seen on one
    digits-mlp zoo with ``prunings="both"``); agreement alone would then only measure that label's prior.
    """
    top = ranking[:n]
    if n < 2 or labels[top].unique().numel() > 1:
        return top
    others = ranking[labels[ranking] != labels[top[0]]][:max(1, -(-n // 10))]
    if not len(others):
        raise NotApplicableError("deepcore: the owner gives one label to every candidate point",
                                 "fingerprint again with --set seeds=data (or a larger --set n_candidates=...), "
                                 "or choose another method")
    return torch.cat([top[:n - len(others)], others])
