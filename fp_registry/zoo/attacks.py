"""Built-in model transformations of the zoo: each is ``fn(model, ctx, **settings) -> new model`` (never in place)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import nets
from ..tasks import soft_target_loss
from ..training import fit, reinitialise

BATCH = 128  # big batches keep the zoo fast on 2 CPU cores


@dataclass
class AttackContext:
    """What an attack may use: the task, the owner's data, a disjoint data subset and a seed."""

    task: str
    x: torch.Tensor | None
    y: torch.Tensor | None
    alt_x: torch.Tensor | None
    alt_y: torch.Tensor | None
    input_shape: tuple[int, ...]
    output_dim: int
    latent_dim: int | None
    seed: int = 0

    def data(self, which: str = "owner") -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``fit`` arguments for the owner's data or the disjoint subset (generators: targets only)."""
        x, y = (self.x, self.y) if which == "owner" else (self.alt_x, self.alt_y)
        if self.task == "generation":
            return None, x
        return x, y

    def queries(self, n: int, seed: int) -> torch.Tensor:
        """Inputs an extractor would send: owner-like data rows plus uniform noise, or latents for generators."""
        g = torch.Generator().manual_seed(seed)
        if self.task == "generation" or self.x is None:
            return torch.randn(n, *self.input_shape, generator=g)
        x = self.x.reshape(len(self.x), *self.input_shape)
        idx = torch.randint(len(x), (n // 2,), generator=g)
        if not x.is_floating_point():  # token ids: owner sentences plus uniformly random ids, never floats
            from ..text import random_tokens

            noise = random_tokens(n - n // 2, x.shape[1], int(x.max()) + 1, g)
            return torch.cat([x[idx], noise])
        lo, hi = float(x.min()), float(x.max())
        noise = lo + (hi - lo) * torch.rand(n - n // 2, *self.input_shape, generator=g)
        return torch.cat([x[idx], noise])

    def fit(self, model: nn.Module, which: str = "owner", **kw: Any) -> nn.Module:
        x, y = self.data(which)
        kw.setdefault("batch_size", BATCH)
        return fit(model, self.task, x, y, latent_dim=self.latent_dim, **kw)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Linear and conv layers in definition order (the ones pruning, noise and quantisation touch).

    transformers' ``Conv1D`` (GPT-2's projections: a linear layer storing its weight as (in, out)) counts too,
    matched by name so this module does not import transformers.
    """
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) or _is_conv1d_linear(m)]


def _is_conv1d_linear(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None


def finetune(model: nn.Module, ctx: AttackContext, layers: str = "all", lr: float = 1e-3, epochs: int = 5,
             data: str = "owner") -> nn.Module:
    """Continue training on the task loss: all layers or only the last one, on owner or disjoint data."""
    m = copy.deepcopy(model)
    params = list(weight_layers(m)[-1].parameters()) if layers == "last" else None
    return ctx.fit(m, data, epochs=epochs, lr=lr, seed=ctx.seed, params=params)


def pruned_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights magnitude pruning acts on: those of :func:`weight_layers`, or, in a module that has none (a
    ``torch.export`` program, whose layers are graph calls), every parameter of two or more dimensions.

    Why the fallback: pruning needs no architecture, and DeepCore's no-zoo path prunes the owner to make its
    derived references; MLflow stores models as programs by default.
    """
    layers = weight_layers(model)
    return [m.weight for m in layers] if layers else [p for p in model.parameters() if p.ndim >= 2]


def _masks(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    """Global magnitude masks over all weight matrices (biases stay)."""
    ws = [w.detach() for w in pruned_weights(model)]
    flat = torch.cat([w.abs().flatten() for w in ws])
    k = int(ratio * len(flat))
    if k == 0:
        return [torch.ones_like(w) for w in ws]
    cut = flat.kthvalue(k).values
    return [(w.abs() > cut).float() for w in ws]


@torch.no_grad()
def _apply_masks(model: nn.Module, masks: list[torch.Tensor]) -> None:
    for w, mask in zip(pruned_weights(model), masks):
        w.mul_(mask)


def prune(model: nn.Module, ctx: AttackContext, ratio: float = 0.5) -> nn.Module:
    """Global magnitude pruning: the ``ratio`` smallest weights become exactly zero."""
    m = copy.deepcopy(model)
    _apply_masks(m, _masks(m, ratio))
    return m.eval()


def prune_finetune(model: nn.Module, ctx: AttackContext, ratio: float = 0.5, lr: float = 1e-3,
                   epochs: int = 3) -> nn.Module:
    """Prune, fine-tune all layers, then re-apply the mask so the sparsity survives."""
    m = prune(model, ctx, ratio)
    masks = _masks(m, ratio)
    ctx.fit(m, epochs=epochs, lr=lr, seed=ctx.seed)
    _apply_masks(m, masks)
    return m.eval()


def fine_prune(model: nn.Module, ctx: AttackContext, ratio: float = 0.5, lr: float = 1e-3,
               epochs: int = 3) -> nn.Module:
    """Fine-pruning: drop the least-activated inputs of the last layer, fine-tune, keep them dropped."""
    m = copy.deepcopy(model)
    head = weight_layers(m)[-1]
    acts: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, inp: acts.append(inp[0].detach()))
    with torch.no_grad():
        m.eval()(ctx.queries(256, ctx.seed))
    hook.remove()
    a = acts[0]
    if isinstance(head, nn.Linear):  # features are the last dim, also for a sequence model's (N, L, d) input
        a = a.reshape(-1, a.shape[-1], 1)
    mean = a.reshape(len(a), head.weight.shape[1], -1).abs().mean((0, 2))
    keep = torch.ones(head.weight.shape[1])
    keep[mean.argsort()[: int(ratio * len(mean))]] = 0
    mask = keep.reshape(1, -1, *([1] * (head.weight.ndim - 2))).expand_as(head.weight).clone()
    with torch.no_grad():
        head.weight.mul_(mask)
    ctx.fit(m, epochs=epochs, lr=lr, seed=ctx.seed)
    with torch.no_grad():
        head.weight.mul_(mask)
    return m.eval()


@torch.no_grad()
def quantize_int8(model: nn.Module, ctx: AttackContext) -> nn.Module:
    """Symmetric per-output-channel int8 fake quantisation of every weight (the class and format stay)."""
    m = copy.deepcopy(model)
    for layer in weight_layers(m):
        w = layer.weight.T if _is_conv1d_linear(layer) else layer.weight  # a view: (out, in) for Conv1D too
        scale = w.abs().reshape(len(w), -1).amax(1).clamp_min(1e-12) / 127
        scale = scale.reshape(-1, *([1] * (w.ndim - 1)))
        w.copy_((w / scale).round().clamp(-127, 127) * scale)
    return m.eval()


@torch.no_grad()
def half_precision(model: nn.Module, ctx: AttackContext) -> nn.Module:
    """float16 round trip of every parameter and buffer (what a half-precision export keeps)."""
    m = copy.deepcopy(model)
    for t in list(m.parameters()) + [b for b in m.buffers() if b.is_floating_point()]:
        t.copy_(t.half().float())
    return m.eval()


@torch.no_grad()
def weight_noise(model: nn.Module, ctx: AttackContext, sigma: float = 0.05) -> nn.Module:
    """``w += N(0, (sigma * std(w))^2)`` per weight tensor."""
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(ctx.seed)
    for layer in weight_layers(m):
        w = layer.weight
        w.add_(torch.randn(w.shape, generator=g) * sigma * float(w.std()))
    return m.eval()


def small_student(ctx: AttackContext) -> nn.Module:
    """A smaller reference MLP with the owner's input and output size (architecture-agnostic)."""
    torch.manual_seed(ctx.seed)
    n_in = 1
    for d in ctx.input_shape:
        n_in *= d
    return nets.MLP(in_features=n_in, hidden=[48], out_features=ctx.output_dim)


def _student(model: nn.Module, ctx: AttackContext, arch: str) -> nn.Module:
    if arch == "small" and hasattr(model, "small_student"):  # token models: a smaller net of their own kind
        return model.small_student(ctx.seed)
    return small_student(ctx) if arch == "small" else reinitialise(model, ctx.seed)


def distill(model: nn.Module, ctx: AttackContext, arch: str = "same", steps: int = 300, lr: float = 3e-3,
            temperature: float = 2.0) -> nn.Module:
    """Soft-label distillation from the teacher's outputs alone on extractor queries (task-agnostic)."""
    student = _student(model, ctx, arch)
    q = ctx.queries(2048, ctx.seed + 1)
    with torch.no_grad():
        teacher = model.eval()(q).reshape(len(q), -1)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    g = torch.Generator().manual_seed(ctx.seed)
    student.train()
    for _ in range(steps):
        idx = torch.randint(len(q), (BATCH,), generator=g)
        loss = soft_target_loss(ctx.task, student(q[idx]).reshape(len(idx), -1), teacher[idx], temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval()


def extract_labels(model: nn.Module, ctx: AttackContext, arch: str = "same", steps: int = 300,
                   lr: float = 3e-3) -> nn.Module:
    """Label-only extraction: train a student on the teacher's top-1 answers (classification only)."""
    if ctx.task != "classification":
        raise ValueError("label-only extraction needs a classifier")
    student = _student(model, ctx, arch)
    q = ctx.queries(2048, ctx.seed + 2)
    with torch.no_grad():
        labels = model.eval()(q).reshape(len(q), -1).argmax(1)
    return fit(student, "classification", q, labels, steps=steps, lr=lr, batch_size=BATCH, seed=ctx.seed)


def permute(model: nn.Module, ctx: AttackContext, k: int = 0) -> nn.Module:
    """Function-preserving shuffle of hidden neurons / channels (same outputs, different weight order).

    ``k`` picks one of many permutations, so each split can use its own.
    """
    from .permute import check_preserved, permute_hidden

    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(ctx.seed + 7919 * k)
    if hasattr(m, "permute_hidden"):  # models that know their own symmetries (GPT-2 blocks are not sequential)
        m.permute_hidden(g)
    else:
        permute_hidden(m, g)
    if not check_preserved(model, m, ctx.queries(64, ctx.seed)):
        raise ValueError(f"cannot permute {type(model).__name__} without changing its function")
    return m.eval()


def retrain(model: nn.Module, ctx: AttackContext, data: str = "owner", epochs: int = 20, lr: float = 2e-3,
            arch: str = "same", hidden: str = "256", k: int = 0) -> nn.Module:
    """An independent model: fresh weights (same arch, or an MLP of ``hidden`` widths) trained from scratch.

    ``k`` only tells apart several retrains with otherwise equal settings (it changes the derived seed).
    """
    if arch == "same":
        fresh = reinitialise(model, ctx.seed)
    elif hasattr(model, "small_student"):  # token models: an MLP cannot read ids; a smaller net of their kind
        fresh = model.small_student(ctx.seed)
    else:
        torch.manual_seed(ctx.seed)
        n_in = 1
        for d in ctx.input_shape:
            n_in *= d
        widths = [int(w) for w in hidden.split("-")]
        fresh = nets.MLP(in_features=n_in, hidden=widths, out_features=ctx.output_dim)
    return ctx.fit(fresh, data, epochs=epochs, lr=lr, seed=ctx.seed)


#: name -> (function, family, derived); registered by fp_registry.default_plugins.attacks
BUILTIN: dict[str, tuple[Any, str, bool]] = {
    "finetune": (finetune, "finetune", True),
    "prune": (prune, "prune", True),
    "prune_finetune": (prune_finetune, "stacked", True),
    "fineprune": (fine_prune, "fineprune", True),
    "int8": (quantize_int8, "quantize", True),
    "fp16": (half_precision, "quantize", True),
    "noise": (weight_noise, "noise", True),
    "distill": (distill, "distill", True),
    "extract": (extract_labels, "extract", True),
    "permute": (permute, "permute", True),
    "retrain": (retrain, "independent", False),
}
