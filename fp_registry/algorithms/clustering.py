"""DeepCore's clustering identification: sort a batch of suspects into the owner's cluster or not (k-means, k=2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fp_registry.errors import UsageError


@dataclass
class ClusterResult:
    """Which suspects fall in the owner's cluster; ``note`` explains degenerate batches."""

    in_owner_cluster: dict[str, bool]
    distances: dict[str, float]
    n_references: int
    references_in_owner_cluster: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"in_owner_cluster": self.in_owner_cluster, "distances": self.distances,
                "n_references": self.n_references, "references_in_owner_cluster": self.references_in_owner_cluster,
                "note": self.note}


def embed(fp: Any, model: Any) -> torch.Tensor:
    """A model's outputs on the core points, concatenated (see :func:`embed_probs`)."""
    return embed_probs(model.outputs(fp.tensors["core"]["x"], "classification", fp.spec["output_dim"]))


def embed_probs(probs: torch.Tensor) -> torch.Tensor:
    """Unit-normalised probability rows (one per core point), concatenated.

    Why unit rows: Euclidean distance then equals the soft similarity's per-point cosine distance, and no single
    point dominates. Why probabilities rather than centred log-probabilities (measured on the digits-mlp and
    digits-cnn test splits, benchmarks/results/deepcore.md): on the selected core points the log space puts pruned and
    extracted copies as far from the owner as homologous models.
    """
    return F.normalize(probs, dim=1).reshape(-1)


def kmeans2(points: torch.Tensor, iters: int = 50) -> torch.Tensor:
    """Deterministic 2-means: centroids start at row 0 (the owner) and the row farthest from it."""
    far = int(torch.cdist(points[:1], points)[0].argmax())
    centroids = torch.stack([points[0], points[far]])
    assign = torch.zeros(len(points), dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(points, centroids).argmin(1)
        if _ > 0 and torch.equal(new, assign):
            break
        assign = new
        for k in range(2):
            if (assign == k).any():  # an empty cluster keeps its old centroid
                centroids[k] = points[assign == k].mean(0)
    return assign


def cluster_suspects(fp: Any, suspects: list[Any], references: list[Any] = ()) -> ClusterResult:
    """Embed owner (from the fingerprint), references and suspects; suspects in the owner's cluster are piracy.

    The clustering step is RECONSTRUCTED (methods.md §4.2): 2-means on each model's embedding distance to the
    owner, initialised at the owner and at the farthest model.

    ``suspects`` and ``references`` are :class:`fp_registry.suspect.Suspect` objects; references are known
    homologous (independently trained) models that anchor the other cluster. Transductive: the answer depends
    on the batch, and with a single model besides the owner any split is trivial, so it is reported as degenerate.
    """
    distances = owner_distances(fp, [*references, *suspects])
    return cluster_distances({s.name: d for s, d in zip(suspects, distances[len(references):])},
                             distances[:len(references)])


def owner_distances(fp: Any, models: list[Any]) -> list[float]:
    """Each model's embedding distance to the owner's: the one feature the clustering uses.

    A scan computes it where the suspect is loaded and keeps only the number, so a batch can be clustered after
    its models are gone (and across resumed runs).
    """
    if fp.method != "deepcore":
        raise UsageError(f"clustering needs a deepcore fingerprint, not {fp.method!r}")
    owner = embed_probs(fp.tensors["core"]["probs"])
    return [float(torch.dist(owner, embed(fp, m))) for m in models]


def cluster_distances(suspects: dict[str, float], references: list[float] = ()) -> ClusterResult:
    """2-means over the owner (distance 0), the references and the suspects, by distance to the owner."""
    names, n_ref = list(suspects), len(references)
    dists = [0.0, *references, *suspects.values()]
    if len(dists) < 3:
        return ClusterResult({n: False for n in names}, dict(suspects), n_ref, 0,
                             "degenerate: one model besides the owner cannot be clustered; add --reference models "
                             "or more suspects, or use the similarity score")
    # Why 2-means on the distance to the owner rather than on the raw embeddings (measured on digits-mlp):
    # independently trained models are far from the owner *and* from each other, so they form no compact
    # group and raw k-means may pull one into the owner's cluster; on this 1-D feature they do group together.
    assign = kmeans2(torch.tensor(dists, dtype=torch.float32).reshape(-1, 1))
    inside = (assign == assign[0]).tolist()
    note = ""
    if len(suspects) == 1:
        note = "one suspect: its cluster is decided by the references alone (weak evidence)"
    if all(inside[1:]):
        note = "every model fell in the owner's cluster: the batch has no separable homologous group"
    return ClusterResult({n: bool(inside[1 + n_ref + i]) for i, n in enumerate(names)}, dict(suspects), n_ref,
                         int(sum(inside[1:1 + n_ref])), note)
