"""MetaV's ``confer=K`` option: conferrable rows that catch label-only extraction, scored beside the verifier.

Why: a label-only extraction (a student trained on the owner's top-1 answers) has the owner's labels but not its
log-prob profile, so MetaV's verifier ranks it with independent models. Its labels on inputs off the data
manifold still carry the owner's quirks, which conferrable examples pick up (Lukas et al., ICLR 2021), as in
TextProbe (:mod:`textprobe_confer`, whose selection and lineage split are reused unchanged).

Unbiased reference: the train split's independents are split by lineage. One half trains the verifier and selects
the rows; the other half took part in neither, so its verifier logits and agreement rates give honest z-scores
(a verifier's logit on its own training negatives is optimistic). The score is ``sigmoid(max(z_metav, z_agree))``.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import torch

from fp_registry.errors import NotApplicableError, ShapeMismatchError
from fp_registry.suspect import Suspect
from fp_registry.zoo.spec import ZooSplit

from . import textprobe_confer as tc
from .metav_verifier import NumpyVerifier, suspect_features


def check_owner(owner: Any) -> None:
    """Top-1 agreement needs class labels; token-id candidates are not implemented for MetaV (use textprobe)."""
    if owner.task != "classification":
        raise NotApplicableError(f"metav confer>0 compares top-1 labels and needs a classifier, not a {owner.task} "
                                 f"model", "use metav with confer=0 for this owner")
    if owner.input_kind == "int64" or owner.domain is None:
        raise NotApplicableError("metav confer>0 samples float rows in the owner's input domain; token-id owners "
                                 "are not supported", "use metav with confer=0, or textprobe:confer=K for text")


def split_zoo(zoo: ZooSplit) -> ZooSplit | None:
    """The verifier's training zoo: all copies and the selection half of the independents (None: too small)."""
    if not tc.usable(zoo):
        warnings.warn("metav confer>0 needs a zoo's train split (2+ copies, 4+ independents): fingerprinting "
                      "without conferrable rows", stacklevel=4)
        return None
    chosen, _ = tc.split_lineages(list(zoo.negatives))
    return ZooSplit(list(zoo.positives), chosen)


def candidate_rows(owner: Any, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` rows uniform in the owner's input domain.

    Why uniform noise (chosen on digits-mlp zoos seeds 1-4, benchmarks/results/metav.md): off the data manifold
    a model's label is its own quirk, not the task's; owner rows plus noise or mixups of two rows stay near the
    manifold, where independent models agree with the owner as often as copies do.
    """
    lo, hi = owner.domain
    return lo + (hi - lo) * torch.rand(n, *owner.input_shape, generator=gen)


def add_conferrable(tensors: dict[str, Any], info: dict[str, Any], owner: Any, zoo: ZooSplit, k: int,
                    n_candidates: int, gen: torch.Generator) -> None:
    """Select ``k`` rows on the copies and the selection half of ``zoo``; measure the held-back half as reference.

    ``textprobe_confer.select`` splits ``zoo.negatives`` by lineage exactly as :func:`split_zoo` did for the
    verifier, so the reference models took part in neither the verifier's training nor the selection.
    """
    rows = candidate_rows(owner, n_candidates, gen)
    x, labels, held_back = tc.select(Suspect(owner.model, "owner"), zoo, rows, k)
    tensors["confer"] = {"x": x.contiguous(), "labels": labels.contiguous()}
    verifier = NumpyVerifier(tensors["verifier"], info["verifier"].get("input", "signed") == "signed")
    stats = [statistics(tensors, info, verifier, Suspect(m, "reference"), owner.output_dim) for m in held_back]
    info["confer_reference"] = tc.reference(stats).to_dict()
    info["confer"] = {"rows": len(x), "candidates": n_candidates, "reference_models": len(held_back)}


def statistics(tensors: dict[str, Any], info: dict[str, Any], verifier: Callable[[np.ndarray], float],
               suspect: Any, output_dim: int) -> tuple[float, float]:
    """(verifier logit on the queries, top-1 agreement on the conferrable rows), from one batch of suspect outputs."""
    q, extra = tensors["queries"]["x"], tensors["confer"]
    feats = suspect_features(suspect, torch.cat([q, extra["x"]]), "classification", output_dim,
                             str(info["verifier"].get("features", "prob")))
    n = q.shape[0] * output_dim
    logit = verifier(feats[:n])
    labels = feats[n:].reshape(-1, output_dim).argmax(1)  # row centring keeps the arg-max
    agree = float((labels == extra["labels"].numpy()).mean())
    return logit, agree


def score(fp: Any, verifier: Callable[[np.ndarray], float], suspect: Any) -> tuple[float, dict[str, Any]]:
    """``sigmoid(max(z_metav, z_agree))`` against the held-back reference independents (see the module doc).

    Why a logistic and not Phi (as TextProbe): Phi(z) is 1.0 in float64 from z ~ 8.3, and copies reach such
    z-scores; ties at 1.0 would break the calibrated threshold if a calibration negative got there too.
    """
    logit, agree = statistics(fp.tensors, fp.info, verifier, suspect, int(fp.spec["output_dim"]))
    if not math.isfinite(logit):
        raise ShapeMismatchError(f"suspect {suspect.name} returns non-finite outputs on the fingerprint queries")
    z_metav, z_agree = tc.Reference(**fp.info["confer_reference"]).z(logit, agree)
    z = max(z_metav, z_agree)
    prob = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    return prob, {"probability": prob, "logit": logit, "agreement": agree, "z_metav": z_metav,
                  "z_agreement": z_agree, "n_queries": int(len(fp.tensors["queries"]["x"])),
                  "n_conferrable": int(len(fp.tensors["confer"]["x"]))}
