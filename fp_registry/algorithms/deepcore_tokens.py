"""DeepCore for token-id classifiers: core candidates by TextProbe's discrete search, then DeepCore's own selection."""
from __future__ import annotations

from typing import Any

import torch

from fp_registry.errors import NotApplicableError
from fp_registry.methods import Built, Owner
from fp_registry.suspect import Suspect

#: single-token substitutions proposed per unfinished point per round (TextProbe's default)
SUBSTITUTIONS = 16


def check_token_owner(owner: Owner) -> None:
    """Token candidates are edits of the owner's sentences, from the ids those sentences use."""
    if owner.data is None:
        raise NotApplicableError("method deepcore on token ids needs owner sentences (data=token ids): candidate "
                                 "points are built from their vocabulary", "pass data= with the owner's token ids")


def token_candidates(owner: Owner, settings: dict[str, Any], seed: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 dict[str, Any]]:
    """``token_candidates`` int64 points pushed towards a random other class, their targets and search info.

    Why TextProbe's search: ids are discrete, so there is no gradient step and no L-inf ball; the budget that
    plays ``eps``'s role is the number of greedy rounds (``token_steps``), each changing at most one token per point.
    The search only queries the owner, so token DeepCore also works for a black-box owner. Ids are never cast
    to float anywhere on this path.
    """
    from fp_registry.algorithms.textprobe import TextProbe, other_class

    n = int(settings["token_candidates"])  # why not n_candidates: each search round costs 16 owner queries/point
    probe = TextProbe(n_points=n, gamma=float(settings["gamma"]), steps=int(settings["token_steps"]),
                      candidates=SUBSTITUTIONS, seeds="mix", target="other", keep_ends=True)
    gen = torch.Generator().manual_seed(seed)
    data = owner.data.reshape(len(owner.data), -1)
    span = (1, data.shape[1] - 1)  # [CLS] / [SEP] positions stay as in the seed sentence
    pool = torch.unique(data[:, span[0]:span[1]])
    x = probe.seed_points(owner, data, pool, span[0], span[1], gen)
    query = Suspect(owner.model, name="owner")
    own = query.outputs(x, "classification", owner.output_dim).argmax(1)
    targets = other_class(own, owner.output_dim, gen)
    x = probe.search_points(query, owner.output_dim, x, targets, pool, span, gen)
    return x, targets, {"max_token": int(data.max()), "owner_queries": query.n_queries}


def build_tokens(method: Any, owner: Owner, zoo: Any, seed: int) -> Built:
    """Token DeepCore's build: candidates by discrete search, then :meth:`DeepCore._select` as for images."""
    x, targets, info = token_candidates(owner, method.settings, seed)
    zoo = zoo.replicas(1) if zoo is not None else None  # the token recipe was chosen and measured with one replica
    probs = Suspect(owner.model, name="owner").outputs(x, "classification", owner.output_dim)
    keep, sel = method._select(zoo, x, probs, method.references(owner, zoo, seed))
    x, probs, targets = x[keep], probs[keep], targets[keep]
    rows = torch.arange(len(x))
    info.update(sel, reached_gamma=float((probs[rows, targets] >= float(method.settings["gamma"])).float().mean()),
                on_target=float((probs.argmax(1) == targets).float().mean()))
    return Built({"core": {"x": x, "probs": probs, "labels": probs.argmax(1), "targets": targets}}, info)


def check_suspect_vocab(fp: Any, suspect: Any) -> None:
    """A suspect whose vocabulary is smaller than the fingerprint's ids gets a clear error before any query."""
    from fp_registry.algorithms.textprobe import check_vocab

    check_vocab(suspect, int(fp.info.get("max_token", int(fp.tensors["core"]["x"].max()))))
