"""Passport-aware normalization layers: a private branch attached to each conv -> norm pair (methods.md §5.1)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

NORMS = (nn.BatchNorm2d, nn.GroupNorm)


@dataclass
class Pair:
    """A protected conv -> norm pair: the conv's index among all Conv2d modules and the norm's module path."""

    conv_index: int
    norm_path: str
    conv: nn.Conv2d


def find_pairs(model: nn.Module) -> list[Pair]:
    """Every BatchNorm2d / GroupNorm directly preceded (in module order) by a Conv2d."""
    pairs, prev, convs = [], None, -1
    for name, module in model.named_modules():
        if list(module.children()):
            continue
        if isinstance(module, nn.Conv2d):
            convs += 1
        elif isinstance(module, NORMS) and isinstance(prev, nn.Conv2d):
            pairs.append(Pair(convs, name, prev))
        prev = module
    return pairs


def convs_of(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def scale_of(conv: nn.Conv2d, passport: torch.Tensor) -> torch.Tensor:
    """s = mean over batch, h, w of (Wc * p): the pre-MLP scale whose signs carry the signature."""
    out = F.conv2d(passport, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out.mean(dim=(0, 2, 3))


class MLP(nn.Module):
    """g: C -> C/4 -> C without bias, LeakyReLU in between; shared by gamma and beta."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(1, channels // 4)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(s), 0.1))


def private_norm(public: nn.Module) -> nn.Module:
    """Affine-free twin of the public norm with its own running statistics."""
    if isinstance(public, nn.BatchNorm2d):
        return nn.BatchNorm2d(public.num_features, affine=False)
    return nn.GroupNorm(public.num_groups, public.num_channels, affine=False)


class DualNorm(nn.Module):
    """Replaces a norm in the training copy: mode 0 is the deployed (public) branch, mode 1 the passport branch."""

    def __init__(self, public: nn.Module, conv: nn.Conv2d, p_gamma: torch.Tensor, p_beta: torch.Tensor) -> None:
        super().__init__()
        self.public = public
        self.private = private_norm(public)
        channels = conv.out_channels
        self.mlp = MLP(channels)
        self.register_buffer("p_gamma", p_gamma)
        self.register_buffer("p_beta", p_beta)
        self._conv = [conv]  # a list, so the shared conv is not registered (and saved) twice
        self.mode = 0

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv = self._conv[0]
        return scale_of(conv, self.p_gamma), scale_of(conv, self.p_beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == 0:
            return self.public(x)
        s_gamma, s_beta = self.scales()
        gamma, beta = self.mlp(s_gamma), self.mlp(s_beta)
        return self.private(x) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def layer_inputs(model: nn.Module, probe: torch.Tensor) -> list[tuple[int, ...]]:
    """Per-conv input shapes (C, H, W), from one forward pass on a probe batch."""
    shapes: list[tuple[int, ...]] = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[1:]))) for c in convs_of(model)]
    try:
        with torch.no_grad():
            model.eval()(probe)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def attach(model: nn.Module, passports: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[nn.Module, list[DualNorm]]:
    """A deep copy of ``model`` whose protected norms are DualNorms; ``passports`` is one (p_gamma, p_beta) per pair."""
    work = copy.deepcopy(model)
    duals = []
    for pair, (pg, pb) in zip(find_pairs(work), passports):
        parent_name, _, child = pair.norm_path.rpartition(".")
        parent = work.get_submodule(parent_name) if parent_name else work
        dual = DualNorm(getattr(parent, child), pair.conv, pg, pb)
        setattr(parent, child, dual)
        duals.append(dual)
    return work, duals


def set_mode(duals: list[DualNorm], mode: int) -> None:
    for d in duals:
        d.mode = mode


def detach_public(work: nn.Module, template: nn.Module) -> nn.Module:
    """The deployable model: a copy of ``template`` (same class) holding the public branch's weights and stats."""
    deployed = copy.deepcopy(template)
    state = {k: v for k, v in work.state_dict().items()}
    mapped = {}
    for key in deployed.state_dict():
        parts = key.rsplit(".", 1)
        public_key = f"{parts[0]}.public.{parts[1]}" if len(parts) == 2 else key
        mapped[key] = state[public_key] if public_key in state else state[key]
    deployed.load_state_dict(mapped)
    return deployed.eval()
