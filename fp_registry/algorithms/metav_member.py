"""MetaV's training-time pieces: float queries kept in the input domain and zoo models as feature maps."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fp_registry.errors import ShapeMismatchError

from .metav_verifier import transform_features


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

    def __init__(self, model: Any, task: str, output_dim: int, mode: str = "prob", tokens: bool = False) -> None:
        self.model, self.task, self.output_dim, self.mode = model, task, output_dim, mode
        self.module = model if isinstance(model, nn.Module) else None
        self.probs: bool | None = None  # whether the model already returns probabilities (decided once)
        self._saved: tuple[bool, list[bool]] | None = None
        self.tokens = tokens  # token-id owner: queries arrive as one-hots (training) or ids (final features)
        self.feed: Any = None  # metav_tokens.OneHotFeed while training, for modules with a float embedding

    def __enter__(self) -> "_Member":
        """Freeze and eval the module for training; the caller's model is restored on exit."""
        if self.module is not None:
            params = list(self.module.parameters())
            self._saved = (self.module.training, [p.requires_grad for p in params])
            self.module.eval()
            for p in params:
                p.requires_grad_(False)
            if self.tokens:
                from .metav_tokens import OneHotFeed

                self.feed = OneHotFeed(self.module)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.feed is not None:
            self.feed.close()
            self.feed = None
        if self.module is not None and self._saved is not None:
            training, flags = self._saved
            for p, flag in zip(self.module.parameters(), flags):
                p.requires_grad_(flag)
            self.module.train(training)

    def features(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(1, N*m) verifier features; ``params`` replaces weights (an on-the-fly perturbed copy)."""
        if self.tokens:  # one-hots reach the module through its word embedding; it is called with the ids
            x = self._token_ids(x)
        if self.module is None or (self.tokens and not (self.feed and self.feed.usable)):
            # a pure black box (or no float embedding): no gradient reaches the queries through it
            from fp_registry.suspect import Suspect

            out = Suspect(self.model).outputs(x.detach(), self.task, self.output_dim)
            return transform_features(out, self.task, self.mode).reshape(1, -1)
        out = self.module(x) if params is None else torch.func.functional_call(self.module, params, (x,))
        if self.feed is not None:
            self.feed.onehot = None
        out = out.reshape(len(x), -1)
        if out.shape[1] != self.output_dim:
            raise ShapeMismatchError(f"zoo model returns {out.shape[1]} outputs, the owner {self.output_dim}")
        if self.task == "classification":
            if self.probs is None:  # same rule as fp_registry.tasks.canonicalize, but differentiable
                d = out.detach()
                self.probs = bool((d >= -1e-6).all()) and bool(torch.allclose(d.sum(1), torch.ones(len(d)), atol=1e-3))
            out = out.clamp_min(0) if self.probs else torch.softmax(out, dim=1)
        return transform_features(out, self.task, self.mode).reshape(1, -1)

    def _token_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Hard ids of straight-through one-hots (handed to the embedding hook), or ids as they are."""
        if x.is_floating_point():
            if self.feed is not None and self.feed.usable:
                self.feed.onehot = x
            return x.detach().argmax(-1)
        return x

    @torch.no_grad()
    def perturbed(self, gen: torch.Generator, noise: float, prune: float) -> dict[str, torch.Tensor] | None:
        """Weights of a cheap modified copy: Gaussian noise up to ``noise`` x std, magnitude pruning up to ``prune``.

        Why: the zoo has only ~15 models per side; random modifications of each member (kept on its side)
        show the verifier many more of the families it must be robust to, without training new models.
        """
        if self.module is None:
            return None
        out = {}
        sigma = noise * float(torch.rand((), generator=gen))
        ratio = prune * float(torch.rand((), generator=gen)) if float(torch.rand((), generator=gen)) < 0.5 else 0.0
        for name, w in self.module.named_parameters():
            if w.ndim < 2:
                continue
            new = w + sigma * float(w.std()) * torch.randn(w.shape, generator=gen)
            if ratio > 0:
                k = int(ratio * w.numel())
                cut = w.abs().flatten().kthvalue(k).values if k > 0 else None
                new = new if cut is None else new * (w.abs() > cut)
            out[name] = new
        return out
