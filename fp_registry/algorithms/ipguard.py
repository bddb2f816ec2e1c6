"""IPGuard baseline: points near the owner's decision boundary, matched on top-1 labels (label-only access)."""
from __future__ import annotations

from typing import Any

import torch

from fp_registry.methods import Built, Method, Owner
from fp_registry.suspect import match_rate
from fp_registry.training import frozen


class IPGuard(Method):
    """Boundary fingerprint of Cao et al. (AsiaCCS 2021); faithful to public re-implementations (methods.md §6).

    Each query starts from an owner input predicted as class i and is optimised so that a second class j
    overtakes i by a margin ``k`` while i stays ahead of every other class: the point lies just across the
    i/j boundary. The score is the label matching rate between suspect and owner on these points.
    """

    name = "ipguard"
    summary = "boundary points + label matching rate (baseline, label-only black box)"
    tasks = ("classification",)
    zoo_use = "calibrate"
    fidelity = "faithful to public re-implementations (DeepJudge, RemovalNet)"
    defaults: dict[str, Any] = {"n_queries": 100, "k": 0.5, "steps": 300, "lr": 0.01, "target": "random"}
    default_threshold = 0.8

    def build(self, owner: Owner, zoo: Any, seed: int, progress: bool) -> Built:
        gen = torch.Generator().manual_seed(seed)
        x = owner.sample_inputs(int(self.settings["n_queries"]), gen)
        model = owner.module
        with torch.no_grad():
            logits = model(x)
        i = logits.argmax(1)
        j = self._second_class(logits, i, gen)
        x = self._optimise(model, owner, x, i, j)
        with torch.no_grad():
            labels = model(x).argmax(1)
        return Built({"queries": {"x": x, "labels": labels}},
                     {"boundary_fraction": float((labels == j).float().mean())})

    def _second_class(self, logits: torch.Tensor, i: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.settings["target"] == "least":
            return logits.argmin(1)
        n = logits.shape[1]
        j = torch.randint(n - 1, (len(i),), generator=gen)
        return j + (j >= i).long()  # uniform over classes other than i

    def _optimise(self, model: torch.nn.Module, owner: Owner, x: torch.Tensor, i: torch.Tensor,
                  j: torch.Tensor) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=float(self.settings["lr"]))
        k = float(self.settings["k"])
        rows = torch.arange(len(x))
        with frozen(model):
            for _ in range(int(self.settings["steps"])):
                z = model(x)
                zi, zj = z[rows, i], z[rows, j]
                others = z.clone()
                others[rows, i] = -torch.inf
                others[rows, j] = -torch.inf
                loss = (torch.relu(zi - zj + k) + torch.relu(others.max(1).values - zi)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.copy_(owner.clamp(x))
        return x.detach()

    def score(self, fp: Any, suspect: Any) -> tuple[float, dict[str, Any]]:
        q = fp.tensors["queries"]
        fp_labels = q["labels"]
        got = suspect.labels(q["x"], n_classes=int(fp.spec["output_dim"]))
        rate = match_rate(got, fp_labels)
        return rate, {"matching_rate": rate, "n_points": len(fp_labels)}
