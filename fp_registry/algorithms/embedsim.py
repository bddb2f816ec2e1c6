"""EmbedSim: black-box fingerprint of embedding models by the geometry of their outputs on secret probe inputs."""
from __future__ import annotations

from typing import Any

import torch

from fp_registry.errors import NotApplicableError, ShapeMismatchError, UsageError
from fp_registry.methods import Built, Method, Owner
from fp_registry.suspect import Suspect


class EmbedSim(Method):
    """Correlation of cosine-similarity matrices of probe embeddings (our design; REEF-like, but black box).

    Build: ``n_points`` probe inputs: owner rows (``probes="data"``), rows whose inner tokens are redrawn from the
    owner's token pool (``"noise"``: word salad no training text contains, so its geometry is the model's own quirk),
    or half each (``"mix"``). The owner's outputs on them give an n x n cosine-similarity matrix S_o.
    Score: Pearson correlation between the off-diagonal entries of S_o and the suspect's S_s, clipped at 0.
    Why this statistic: it is invariant to any rotation or rescaling of the suspect's output space and needs no
    equal width, so a suspect that re-projects or truncates the embedding is still comparable; only outputs are used.
    """

    name = "embedsim"
    summary = "cosine-similarity-matrix correlation of output embeddings on secret probes (embedding models)"
    tasks = ("regression",)
    zoo_use = "calibrate"
    input_kinds = ("float32", "int64")
    fidelity = "our design (representation-similarity fingerprint on outputs; black-box analogue of REEF)"
    defaults: dict[str, Any] = {"n_points": 96, "probes": "mix", "keep_ends": True}
    default_threshold = 0.9

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if self.settings["probes"] not in ("data", "noise", "mix"):
            raise UsageError(f"embedsim setting probes={self.settings['probes']!r} is not valid",
                             "use one of: data, noise, mix")

    def check_owner(self, owner: Owner) -> None:
        super().check_owner(owner)
        if owner.data is None:
            raise NotApplicableError("method embedsim needs owner inputs (data=...) to draw probes from")
        if owner.output_dim < 2:
            raise NotApplicableError("method embedsim needs vector outputs (an embedding), not a scalar")

    def build(self, owner: Owner, zoo: Any, seed: int, progress: bool) -> Built:
        gen = torch.Generator().manual_seed(seed)
        x = self._probes(owner, gen)
        query = Suspect(owner.model, name="owner")
        sim = _cosine_matrix(query.raw(x))
        return Built({"probes": {"x": x, "sim": sim}}, {"owner_queries": query.n_queries,
                                                         "max_token": int(x.max()) if owner.input_kind == "int64"
                                                         else None})

    def _probes(self, owner: Owner, gen: torch.Generator) -> torch.Tensor:
        n, data = int(self.settings["n_points"]), owner.data
        if len(data) < n:
            raise UsageError(f"embedsim needs at least n_points={n} owner inputs, got {len(data)}")
        rows = data[torch.randperm(len(data), generator=gen)[:n]].clone()
        n_data = {"data": n, "noise": 0, "mix": n // 2}[self.settings["probes"]]
        if n_data == n:
            return rows
        flat = rows.reshape(n, -1)
        if owner.input_kind == "int64":
            _salad(flat[n_data:], data.reshape(len(data), -1), bool(self.settings["keep_ends"]), gen)
        else:  # continuous inputs: uniform noise in the owner's data range
            lo, hi = owner.domain or (float(data.min()), float(data.max()))
            flat[n_data:] = lo + (hi - lo) * torch.rand(flat[n_data:].shape, generator=gen)
        return flat.reshape(rows.shape)

    def score(self, fp: Any, suspect: Suspect) -> tuple[float, dict[str, Any]]:
        probes = fp.tensors["probes"]
        try:
            out = suspect.raw(probes["x"])
        except IndexError as exc:  # an embedding table smaller than the probes' ids
            raise ShapeMismatchError(f"suspect {suspect.name} rejects the probe token ids: its vocabulary is "
                                     f"smaller than the owner's ({str(exc)[:80]})") from exc
        if out.ndim < 2 or out.reshape(len(out), -1).shape[1] < 2:
            raise ShapeMismatchError(f"suspect {suspect.name} returns a scalar per input, not an embedding")
        r = _offdiag_corr(_cosine_matrix(out), probes["sim"])
        width = int(out.reshape(len(out), -1).shape[1])
        return max(r, 0.0), {"sim_corr": r, "n_points": len(out), "suspect_dim": width}


def _salad(rows: torch.Tensor, data: torch.Tensor, keep_ends: bool, gen: torch.Generator) -> None:
    """Replace each row's real tokens by ids drawn from the owner's pool, keeping padding (and [CLS]/[SEP])."""
    pad = int(data.min())  # padding is the smallest id ([PAD] = 0 in BERT vocabularies)
    pool = torch.unique(data[data != pad])
    for row in rows:
        real = (row != pad).nonzero().flatten()
        inner = real[1:-1] if keep_ends and len(real) > 2 else real
        row[inner] = pool[torch.randint(len(pool), (len(inner),), generator=gen)]


def _cosine_matrix(out: torch.Tensor) -> torch.Tensor:
    e = torch.nn.functional.normalize(out.reshape(len(out), -1).double(), dim=1)
    return (e @ e.T).float()


def _offdiag_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of the strict upper triangles (the diagonal is 1 for every model)."""
    iu = torch.triu_indices(len(a), len(a), offset=1)
    u, v = a[iu[0], iu[1]].double(), b[iu[0], iu[1]].double()
    u, v = u - u.mean(), v - v.mean()
    denom = float(u.norm() * v.norm())
    return float((u @ v) / denom) if denom > 0 else 0.0
