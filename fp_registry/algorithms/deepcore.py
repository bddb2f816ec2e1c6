"""DeepCore: core points far from the owner's decision boundary, matched by label agreement or soft similarity."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from fp_registry.errors import NotApplicableError, ShapeMismatchError, UsageError
from fp_registry.methods import Built, Method, Owner
from fp_registry.training import frozen


class DeepCore(Method):
    """DeepCore (arXiv 2411.00380, ECML-PKDD 2025); the algorithm is a RECONSTRUCTION (methods.md §4.2).

    Confirmed by the abstract: core points are built by optimising the owner's predicted confidence of a few
    sample points, and piracy is identified by two similarity methods and one clustering method.
    Reconstructed here (no public code): seeds from owner data or uniform noise in the input domain; target
    class ``t_i`` either the owner's own prediction (``target="own"``) or a different random class
    (``target="other"``, off-manifold points that homologous models agree on less); ``x_i`` minimises
    ``CE(f0(x), t_i)`` with Adam, projected into the input domain (optionally an L-inf ball of ``eps`` around
    the seed), until ``p_t(f0(x_i)) >= gamma``. Similarity A (``similarity="label"``) is the fraction of core
    points where the suspect's top-1 label equals the owner's; similarity B (``"soft"``) is the mean cosine
    between suspect and owner outputs, by default on centred log-probabilities (``soft_space="logprob"``, our
    deviation: plain probabilities, ``"prob"``, saturate on core points and did not separate homologous models
    in our measurements). Clustering lives in :mod:`fp_registry.algorithms.clustering`.
    """

    name = "deepcore"
    summary = "high-confidence core points + label or soft similarity (piracy vs homologous models)"
    tasks = ("classification",)
    zoo_use = "calibrate"
    fidelity = "reconstructed from the abstract (methods.md §4.2); no public code"
    defaults: dict[str, Any] = {"similarity": "soft", "soft_space": "logprob", "n_points": 50, "gamma": 0.999,
                                "seeds": "noise", "target": "auto", "steps": 500, "lr": 0.01, "eps": "auto"}
    #: "auto" settings, chosen per similarity by measurement on digits-mlp (README, DeepCore section): label
    #: agreement needs off-manifold points near their noise seeds, the log-prob similarity works on true core points
    auto: ClassVar[dict[str, dict[str, Any]]] = {"soft": {"target": "own", "eps": None},
                                                 "label": {"target": "other", "eps": 0.05}}
    default_threshold = 0.8

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for key in ("target", "eps"):  # resolved now so the saved fingerprint records concrete values
            if self.settings[key] == "auto":
                self.settings[key] = self.auto.get(self.settings["similarity"], self.auto["soft"])[key]
        choices = {"similarity": ("label", "soft"), "soft_space": ("logprob", "prob"), "seeds": ("data", "noise"),
                   "target": ("own", "other")}
        for key, allowed in choices.items():
            if self.settings[key] not in allowed:
                raise UsageError(f"deepcore setting {key}={self.settings[key]!r} is not valid",
                                 f"use one of: {', '.join(allowed)}")

    def check_owner(self, owner: Owner) -> None:
        if owner.task != "classification":
            raise NotApplicableError(
                f"method deepcore does not support task {owner.task!r}: core points are defined by their distance "
                "from a decision boundary, which regression and generation models do not have",
                "use a method that supports this task (see `fpreg methods`)")
        self.check_input_kind(owner)
        if owner.module is None:
            raise NotApplicableError("method deepcore needs the owner as a torch module (it optimises inputs "
                                     "through the owner's gradients)")

    def build(self, owner: Owner, zoo: Any, seed: int, progress: bool) -> Built:
        gen = torch.Generator().manual_seed(seed)
        x0 = self._seeds(owner, gen)
        model = owner.module
        with torch.no_grad():
            own = model(x0).argmax(1)
        targets = own if self.settings["target"] == "own" else _other_class(own, owner.output_dim, gen)
        x = self._optimise(model, owner, x0, targets)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
        reached = probs[torch.arange(len(x)), targets] >= float(self.settings["gamma"])
        info = {"reached_gamma": float(reached.float().mean()),
                "on_target": float((probs.argmax(1) == targets).float().mean())}
        return Built({"core": {"x": x, "probs": probs, "labels": probs.argmax(1), "targets": targets}}, info)

    def _seeds(self, owner: Owner, gen: torch.Generator) -> torch.Tensor:
        n = int(self.settings["n_points"])
        if self.settings["seeds"] == "data" and owner.data is not None:
            return owner.sample_inputs(n, gen)
        lo, hi = owner.domain if owner.domain is not None else (0.0, 1.0)
        return lo + (hi - lo) * torch.rand(n, *owner.input_shape, generator=gen)

    def _optimise(self, model: torch.nn.Module, owner: Owner, x0: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
        """Adam on CE(f0(x), t); points that reached gamma stop moving (their loss is masked out)."""
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=float(self.settings["lr"]))
        gamma, eps = float(self.settings["gamma"]), self.settings["eps"]
        rows = torch.arange(len(x))
        with frozen(model):
            for _ in range(int(self.settings["steps"])):
                logits = model(x)
                active = (torch.softmax(logits, 1)[rows, targets] < gamma).float()
                if active.sum() == 0:
                    break
                loss = (F.cross_entropy(logits, targets, reduction="none") * active).sum()
                opt.zero_grad()
                loss.backward()
                x.grad *= active.reshape(-1, *[1] * (x.ndim - 1))  # Adam momentum must not move finished points
                opt.step()
                with torch.no_grad():
                    if eps is not None:
                        x.copy_(x0 + (x - x0).clamp(-float(eps), float(eps)))
                    x.copy_(owner.clamp(x))
        return x.detach()

    def score(self, fp: Any, suspect: Any) -> tuple[float, dict[str, Any]]:
        core = fp.tensors["core"]
        if self.settings["similarity"] == "label":
            got = suspect.labels(core["x"])
            if len(got) != len(core["labels"]) or int(got.max()) >= fp.spec["output_dim"]:
                raise ShapeMismatchError(f"suspect {suspect.name} does not return labels in "
                                         f"0..{fp.spec['output_dim'] - 1}")
            s = float((got == core["labels"]).float().mean())
            return s, {"label_agreement": s, "n_points": len(got)}
        probs = suspect.outputs(core["x"], "classification", fp.spec["output_dim"])
        if self.settings["soft_space"] == "prob":
            s = float(F.cosine_similarity(probs, core["probs"], dim=1).mean())
        else:
            s = float(F.cosine_similarity(_centred_log(probs), _centred_log(core["probs"]), dim=1).mean())
        return max(s, 0.0), {"soft_similarity": s, "space": self.settings["soft_space"], "n_points": len(probs)}


def _centred_log(probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities minus their row mean: softmax-invariant, and it keeps the non-top classes visible.

    Why (reconstruction, measured): on core points every well-trained model puts ~all mass on the same class,
    so cosine on probabilities is ~1 for homologous models too; the owner's ranking of the *other* classes
    there is idiosyncratic, and copies keep it while independently trained models do not.
    """
    logp = probs.clamp_min(1e-12).log()
    return logp - logp.mean(1, keepdim=True)


def _other_class(own: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    j = torch.randint(n_classes - 1, (len(own),), generator=gen)
    return j + (j >= own).long()  # uniform over the classes the owner does not predict
