"""The embedded scenarios: an owner model per bundled dataset, trained in seconds on CPU and cached."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import nets
from .data import Dataset, load_dataset
from .errors import UsageError
from .training import fit


@dataclass(frozen=True)
class Scenario:
    """A task, a dataset, an owner architecture and how to train it."""

    name: str
    task: str
    dataset: str
    arch: str
    arch_kwargs: dict[str, Any]
    epochs: int = 30
    lr: float = 1e-3
    alt_archs: tuple[tuple[str, dict[str, Any]], ...] = field(default=())

    @property
    def latent_dim(self) -> int | None:
        return self.arch_kwargs.get("latent_dim") if self.task == "generation" else None

    def build(self, seed: int, arch: str | None = None, kwargs: dict[str, Any] | None = None) -> nn.Module:
        torch.manual_seed(seed)
        return nets.build(arch or self.arch, kwargs if kwargs is not None else self.arch_kwargs)

    def train(self, model: nn.Module, x: torch.Tensor | None, y: torch.Tensor | None, seed: int,
              epochs: int | None = None) -> nn.Module:
        return fit(model, self.task, x, y, epochs=epochs or self.epochs, lr=self.lr, seed=seed,
                   latent_dim=self.latent_dim)

    def load_data(self) -> Dataset:
        return load_dataset(self.dataset)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("digits-mlp", "classification", "digits", "mlp", {"in_features": 64, "hidden": [128, 64],
             "out_features": 10}, epochs=30,
             alt_archs=(("mlp", {"in_features": 64, "hidden": [256], "out_features": 10}),
                        ("cnn", {"channels": [8, 16]}))),
    Scenario("digits-cnn", "classification", "digits", "cnn", {"channels": [16, 32]}, epochs=20,
             alt_archs=(("mlp", {"in_features": 64, "hidden": [128, 64], "out_features": 10}),
                        ("cnn", {"channels": [8, 16], "norm": "gn"}))),
    Scenario("diabetes-fcn", "regression", "diabetes", "mlp", {"in_features": 10, "hidden": [100, 100, 100],
             "out_features": 1}, epochs=60,
             alt_archs=(("mlp", {"in_features": 10, "hidden": [64, 64], "out_features": 1}),
                        ("mlp", {"in_features": 10, "hidden": [200], "out_features": 1}))),
    Scenario("digits-gen", "generation", "digits", "generator", {"latent_dim": 16, "hidden": [64, 128],
             "out_features": 64}, epochs=40, lr=2e-3,
             alt_archs=(("generator", {"latent_dim": 16, "hidden": [128, 128], "out_features": 64}),
                        ("generator", {"latent_dim": 16, "hidden": [256], "out_features": 64}))),
    # token ids (int64, shape (N, 20)) of a locally generated text task; a tiny BERT trained from scratch
    Scenario("text-bert", "classification", "synthtext", "tinybert", {"hidden": 32, "layers": 2, "heads": 2,
             "intermediate": 64, "dropout": 0.0}, epochs=14, lr=2e-3,
             alt_archs=(("tinybert", {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "dropout": 0.0}),
                        ("tinybert", {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128, "dropout": 0.0}))),
    # a causal LM over a locally generated language (int64 contexts (N, 12)); its output is the next-token logits
    Scenario("text-gpt", "classification", "synthlm", "tinygpt", {"n_embd": 32, "layers": 2, "heads": 2},
             epochs=20, lr=2e-3,
             alt_archs=(("tinygpt", {"n_embd": 16, "layers": 1, "heads": 2}),
                        ("tinygpt", {"n_embd": 64, "layers": 2, "heads": 4}))),
]}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}", f"use one of: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def train_owner(name: str, seed: int = 0, use_cache: bool = True) -> nn.Module:
    """The scenario's owner model, trained on the owner's part of the data (cached on disk)."""
    from .modelio import cached_model

    scenario = get_scenario(name)

    def make() -> nn.Module:
        x, y = scenario.load_data().owner
        if scenario.task == "generation":  # a generator learns the images themselves
            x, y = None, x
        return scenario.train(scenario.build(seed), x, y, seed)

    if not use_cache:
        return make()
    return cached_model(f"{name}/owner(seed={seed})", make)


def owner_inputs(name: str) -> dict[str, Any]:
    """Keyword arguments for ``fingerprint()`` describing the scenario's owner data."""
    scenario = get_scenario(name)
    x, y = scenario.load_data().owner
    kwargs: dict[str, Any] = {"task": scenario.task, "data": x, "labels": y}
    if scenario.task == "generation":  # data holds real samples; queries live in latent space
        kwargs.update(labels=None, input_shape=(scenario.latent_dim,))
    return kwargs
