"""MetaV: adaptive fingerprint queries and a meta-verifier trained jointly on a zoo (task-agnostic)."""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from fp_registry.errors import ShapeMismatchError, UsageError
from fp_registry.methods import Built, Method, Owner
from fp_registry.zoo.spec import ZooModel, ZooSplit

HIDDEN = (128, 64, 32)


def make_verifier(in_features: int, hidden: tuple[int, ...] = HIDDEN) -> nn.Sequential:
    """The meta-verifier V: MLP(N*m -> 128 -> 64 -> 32 -> 1) with LeakyReLU; outputs a logit."""
    layers: list[nn.Module] = []
    prev = in_features
    for width in hidden:
        layers += [nn.Linear(prev, width), nn.LeakyReLU(0.2)]
        prev = width
    layers.append(nn.Linear(prev, 1))
    return nn.Sequential(*layers)


class _Queries(nn.Module):
    """Free parameters mapped into the input domain: tanh re-parametrisation when bounded, identity for latents."""

    def __init__(self, init: torch.Tensor, domain: tuple[float, float] | None) -> None:
        super().__init__()
        self.domain = domain
        if domain is None:
            self.w = nn.Parameter(init.clone())
        else:
            lo, hi = domain
            unit = (2 * (init - lo) / max(hi - lo, 1e-12) - 1).clamp(-0.98, 0.98)  # atanh stays finite
            self.w = nn.Parameter(torch.atanh(unit))

    def forward(self) -> torch.Tensor:
        if self.domain is None:
            return self.w
        lo, hi = self.domain
        return lo + (hi - lo) * (torch.tanh(self.w) + 1) / 2


class _Member:
    """A zoo model as a differentiable feature map: frozen, eval mode, canonicalised like ``Suspect.outputs``."""

    def __init__(self, model: Any, task: str, output_dim: int) -> None:
        self.model, self.task, self.output_dim = model, task, output_dim
        self.module = model if isinstance(model, nn.Module) else None
        self.probs: bool | None = None  # whether the model already returns probabilities (decided once)
        self._saved: tuple[bool, list[bool]] | None = None

    def __enter__(self) -> "_Member":
        """Freeze and eval the module for training; the caller's model is restored on exit."""
        if self.module is not None:
            params = list(self.module.parameters())
            self._saved = (self.module.training, [p.requires_grad for p in params])
            self.module.eval()
            for p in params:
                p.requires_grad_(False)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.module is not None and self._saved is not None:
            training, flags = self._saved
            for p, flag in zip(self.module.parameters(), flags):
                p.requires_grad_(flag)
            self.module.train(training)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is None:  # a pure black box: no gradient reaches the queries through it
            from fp_registry.suspect import Suspect

            return Suspect(self.model).outputs(x.detach(), self.task, self.output_dim).reshape(1, -1)
        out = self.module(x)
        out = out.reshape(len(x), -1)
        if out.shape[1] != self.output_dim:
            raise ShapeMismatchError(f"zoo model returns {out.shape[1]} outputs, the owner {self.output_dim}")
        if self.task == "classification":
            if self.probs is None:  # same rule as fp_registry.tasks.canonicalize, but differentiable
                d = out.detach()
                self.probs = bool((d >= -1e-6).all()) and bool(torch.allclose(d.sum(1), torch.ones(len(d)), atol=1e-3))
            out = out.clamp_min(0) if self.probs else torch.softmax(out, dim=1)
        return out.reshape(1, -1)


def _auc(pos: list[float], neg: list[float]) -> float:
    """ROC-AUC by pairwise comparison (ties count one half); tiny held-out sets only."""
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


class MetaV(Method):
    """MetaV (Pan et al., KDD 2022): queries I and verifier V minimise the zoo's BCE jointly (methods.md §2).

    The owner counts as derived and appears in every step; V sees the concatenated canonical outputs of a
    model on the N queries. A few train-split models are held out for early stopping; the decision threshold
    is calibrated afterwards by the core on the calibration split.
    """

    name = "metav"
    summary = "adaptive queries + meta-verifier trained on a zoo (task-agnostic, black-box outputs)"
    tasks = ("classification", "regression", "generation")
    zoo_use = "train"
    fidelity = "faithful to the abstract and an unofficial re-implementation; verifier architecture is ours"
    defaults: dict[str, Any] = {"n_queries": 50, "steps": 400, "lr_verifier": 1e-3, "lr_queries": 1e-2,
                                "n_pos": 3, "n_neg": 3, "adaptive": True, "input_noise": 0.0,
                                "holdout": 0.25, "eval_every": 10, "patience": 12,
                                "label_smoothing": 0.0, "weight_decay": 0.0,
                                "score_temperature": 1.0}
    default_threshold = 0.5

    # ---------------------------------------------------------------- build
    def build(self, owner: Owner, zoo: ZooSplit | None, seed: int, progress: bool) -> Built:
        if zoo is None or not zoo.negatives:
            raise UsageError("metav trains on a zoo and needs independent (negative) models",
                             "pass negatives=[...] (and positives=[...]) or let fingerprint() build a zoo")
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        n = int(self.settings["n_queries"])
        queries = _Queries(owner.sample_inputs(n, gen), owner.domain)
        train_pos, train_neg, val_pos, val_neg = self._split(owner, zoo, gen)
        wrap = lambda ms: [_Member(m.model, owner.task, owner.output_dim) for m in ms]  # noqa: E731
        pos, neg, vpos, vneg = wrap(train_pos), wrap(train_neg), wrap(val_pos), wrap(val_neg)
        with contextlib.ExitStack() as stack:  # zoo models are frozen only while training
            for member in pos + neg + vpos + vneg:
                stack.enter_context(member)
            with torch.no_grad():
                feats = torch.cat([m.features(queries()) for m in pos + neg])
            if not bool(torch.isfinite(feats).all()):
                raise UsageError("a zoo model returns non-finite outputs on the owner's inputs")
            shift, scale = feats.mean(0), self._scale(feats)
            verifier = make_verifier(n * owner.output_dim)
            best = self._train(queries, verifier, shift, scale, pos, neg, vpos, vneg, owner, gen, progress)
        x = owner.clamp(best["x"])
        tensors = {"queries": {"x": x.contiguous()},
                   "verifier": {**{k: v.contiguous() for k, v in best["verifier"].items()},
                                "shift": shift.contiguous(), "scale": scale.contiguous()}}
        info = {"verifier": {"in_features": n * owner.output_dim, "hidden": list(HIDDEN), "activation": "leaky_relu(0.2)",
                             "output": "sigmoid"},
                "n_queries": n, "steps_run": best["steps_run"], "best_step": best["step"],
                "holdout": {"positives": len(vpos), "negatives": len(vneg), "auc": best["auc"]},
                "train_models": {"positives": len(pos), "negatives": len(neg)}}
        return Built(tensors, info)

    @staticmethod
    def _scale(feats: torch.Tensor) -> torch.Tensor:
        """Per-feature spread across zoo models; floored so saturated outputs do not blow up."""
        std = feats.std(0) if len(feats) > 1 else torch.ones(feats.shape[1])
        return std.clamp_min(max(float(std.mean()) * 0.1, 1e-4))

    def _split(self, owner: Owner, zoo: ZooSplit, gen: torch.Generator
               ) -> tuple[list[ZooModel], list[ZooModel], list[ZooModel], list[ZooModel]]:
        """Owner + most train models for training; a seeded few of each side held out for early stopping."""
        frac = float(self.settings["holdout"])

        def cut(models: list[ZooModel]) -> tuple[list[ZooModel], list[ZooModel]]:
            k = int(math.floor(frac * len(models))) if len(models) >= 3 else 0
            order = torch.randperm(len(models), generator=gen).tolist()
            return [models[i] for i in order[k:]], [models[i] for i in order[:k]]

        tp, vp = cut(list(zoo.positives))
        tn, vn = cut(list(zoo.negatives))
        me = ZooModel("owner", owner.model, True, "owner", "train")
        return [me] + tp, tn, vp, vn

    def _train(self, queries: _Queries, verifier: nn.Sequential, shift: torch.Tensor, scale: torch.Tensor,
               pos: list[_Member], neg: list[_Member], vpos: list[_Member], vneg: list[_Member],
               owner: Owner, gen: torch.Generator, progress: bool) -> dict[str, Any]:
        from tqdm.auto import tqdm

        s = self.settings
        adaptive = bool(s["adaptive"])
        if not adaptive:
            queries.w.requires_grad_(False)
        opt_v = torch.optim.Adam(verifier.parameters(), lr=float(s["lr_verifier"]),
                                 weight_decay=float(s["weight_decay"]))
        opt_q = torch.optim.Adam([queries.w], lr=float(s["lr_queries"])) if adaptive else None
        v_of = lambda m, x: verifier((m.features(x) - shift) / scale).reshape(())  # noqa: E731
        best: dict[str, Any] = {"key": (-1.0, -math.inf), "step": 0, "auc": None, "x": queries().detach().clone(),
                                "verifier": copy.deepcopy(verifier.state_dict())}
        bad, steps = 0, int(s["steps"])
        bar = tqdm(range(steps), desc="metav", disable=not progress, leave=False)
        for step in bar:
            x = self._transform(queries(), owner, gen)
            logits_p = torch.stack([v_of(m, x) for m in [pos[0]] + self._pick(pos[1:], int(s["n_pos"]), gen)])
            logits_n = torch.stack([v_of(m, x) for m in self._pick(neg, int(s["n_neg"]), gen)])
            eps = float(s["label_smoothing"])  # bounded logits: scores do not saturate into ties at 0 or 1
            loss = (F.binary_cross_entropy_with_logits(logits_p, torch.full_like(logits_p, 1 - eps))
                    + F.binary_cross_entropy_with_logits(logits_n, torch.full_like(logits_n, eps)))
            opt_v.zero_grad()
            if opt_q is not None:
                opt_q.zero_grad()
            loss.backward()
            opt_v.step()
            if opt_q is not None:
                opt_q.step()
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if (step + 1) % int(s["eval_every"]) == 0 or step + 1 == steps:
                key = self._evaluate(queries, v_of, vpos or pos, vneg or neg)
                if key > best["key"]:
                    best = {"key": key, "step": step + 1, "auc": key[0], "x": queries().detach().clone(),
                            "verifier": copy.deepcopy(verifier.state_dict())}
                    bad = 0
                else:
                    bad += 1
                if vpos and vneg and bad >= int(s["patience"]):
                    break
        bar.close()
        best["steps_run"] = step + 1
        return best

    @staticmethod
    def _evaluate(queries: _Queries, v_of: Callable[..., torch.Tensor], vpos: list[_Member],
                  vneg: list[_Member]) -> tuple[float, float]:
        """Held-out (AUC, margin): separation first, then the gap between the worst positive and negative."""
        with torch.no_grad():
            x = queries()
            p = [float(v_of(m, x)) for m in vpos]
            n = [float(v_of(m, x)) for m in vneg]
        return _auc(p, n), min(p) - max(n)

    @staticmethod
    def _pick(members: list[_Member], k: int, gen: torch.Generator) -> list[_Member]:
        if not members or k <= 0:
            return []
        idx = torch.randperm(len(members), generator=gen)[:k] if k < len(members) else torch.arange(len(members))
        return [members[i] for i in idx.tolist()]

    def _transform(self, x: torch.Tensor, owner: Owner, gen: torch.Generator) -> torch.Tensor:
        """Optional Gaussian input noise, relative to the domain width, for robustness to pre-processing."""
        sigma = float(self.settings["input_noise"])
        if sigma <= 0:
            return x
        width = (owner.domain[1] - owner.domain[0]) if owner.domain else 1.0
        noisy = x + sigma * width * torch.randn(x.shape, generator=gen)
        return noisy if owner.domain is None else noisy.clamp(*owner.domain)

    # ---------------------------------------------------------------- verify
    def score(self, fp: Any, suspect: Any) -> tuple[float, dict[str, Any]]:
        # fresh, aligned copies: loaded (mmap-ed) tensors may take other SIMD paths and differ in the last bits
        x = fp.tensors["queries"]["x"].clone()
        out_dim = int(fp.spec["output_dim"])
        feats = suspect.outputs(x, fp.task, out_dim).reshape(1, -1).double()
        v = {k: t.clone().double() for k, t in fp.tensors["verifier"].items()}
        if feats.shape[1] != v["shift"].numel():
            raise ShapeMismatchError(f"suspect {suspect.name} gives {feats.shape[1]} features, "
                                     f"the verifier expects {v['shift'].numel()}")
        net = make_verifier(feats.shape[1], tuple(fp.info.get("verifier", {}).get("hidden", HIDDEN))).double()
        net.load_state_dict({k: t for k, t in v.items() if k not in ("shift", "scale")})
        with torch.no_grad():
            logit = float(net((feats - v["shift"]) / v["scale"]).reshape(()))
        if not math.isfinite(logit):
            raise ShapeMismatchError(f"suspect {suspect.name} returns non-finite outputs on the fingerprint queries")
        # sigmoid(logit / T): monotone in the verifier's logit, so rankings are unchanged, but confident
        # verdicts stay distinct in float64 instead of tying at 1.0 (a tie there breaks the calibrated threshold)
        z = logit / float(self.settings["score_temperature"])
        prob = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        return prob, {"probability": prob, "logit": logit, "n_queries": int(len(x))}
