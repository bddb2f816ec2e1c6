"""Reference architectures of the embedded scenarios, rebuildable from a JSON config."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCHS: dict[str, type["RefNet"]] = {}


class RefNet(nn.Module):
    """A module that remembers the keyword arguments it was built with, so it can be saved safely."""

    arch: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that names its own arch registers it: a subclass (e.g. a Hub mixin wrapper) must not take
        # over its parent's name, or every later load would build the wrapper.
        if cls.__dict__.get("arch"):
            ARCHS[cls.arch] = cls

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(kwargs)


class MLP(RefNet):
    """Fully connected ReLU network; the classifier and regressor of the tabular scenarios."""

    arch = "mlp"

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] | list[int] = (128, 64),
                 out_features: int = 10, out_activation: str = "none") -> None:
        super().__init__(in_features=in_features, hidden=list(hidden), out_features=out_features,
                         out_activation=out_activation)
        layers: list[nn.Module] = []
        prev = in_features
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, out_features))
        if out_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # flatten, not reshape(len(x)), keeps torch.export batch-dynamic


class SmallCNN(RefNet):
    """Two conv-BN-ReLU blocks and a linear head, for 8x8 digit images."""

    arch = "cnn"

    def __init__(self, in_channels: int = 1, side: int = 8, channels: tuple[int, ...] | list[int] = (16, 32),
                 n_classes: int = 10, norm: str = "bn") -> None:
        super().__init__(in_channels=in_channels, side=side, channels=list(channels), n_classes=n_classes, norm=norm)
        blocks: list[nn.Module] = []
        prev = in_channels
        for width in channels:
            blocks += [nn.Conv2d(prev, width, 3, padding=1, bias=norm == "none"), _norm(norm, width), nn.ReLU()]
            prev = width
        blocks.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(prev * (side // 2) ** 2, n_classes)
        self.side = side
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, self.in_channels, self.side, self.side)
        return self.head(self.features(x).flatten(1))


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(width)
    if kind == "gn":
        return nn.GroupNorm(4, width)
    return nn.Identity()


class Generator(RefNet):
    """Fully connected ReLU generator from a latent vector to a flattened image in [0, 1]-ish range."""

    arch = "generator"

    def __init__(self, latent_dim: int = 16, hidden: tuple[int, ...] | list[int] = (64, 128),
                 out_features: int = 64) -> None:
        super().__init__(latent_dim=latent_dim, hidden=list(hidden), out_features=out_features)
        layers: list[nn.Module] = []
        prev = latent_dim
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1))


def build(arch: str, config: dict[str, Any]) -> RefNet:
    """Rebuild a reference architecture from its saved config."""
    if arch not in ARCHS:
        from . import text, textlm  # noqa: F401  token-input archs (tinybert, tinygpt) register on first use
    if arch not in ARCHS:
        from .errors import ModelLoadError
        raise ModelLoadError(f"unknown reference architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch](**config)
