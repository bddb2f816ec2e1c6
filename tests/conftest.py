"""Shared fixtures: an isolated FP_REGISTRY_HOME, small trained digits models, a plugin "undo" helper."""
from __future__ import annotations

import copy
import os
from typing import Any, Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("fp_home")
    old = os.environ.get("FP_REGISTRY_HOME")
    os.environ["FP_REGISTRY_HOME"] = str(home)
    torch.set_num_threads(2)
    yield
    if old is None:
        os.environ.pop("FP_REGISTRY_HOME", None)
    else:
        os.environ["FP_REGISTRY_HOME"] = old


def _digits_mlp(seed: int, epochs: int = 8) -> torch.nn.Module:
    from fp_registry.scenarios import get_scenario
    from fp_registry.training import fit

    sc = get_scenario("digits-mlp")
    x, y = sc.load_data().owner
    return fit(sc.build(seed), "classification", x, y, epochs=epochs, lr=2e-3, seed=seed, batch_size=64)


@pytest.fixture(scope="session")
def digits() -> dict[str, Any]:
    """Owner data of the digits scenario, as fingerprint() keyword arguments."""
    from fp_registry.scenarios import owner_inputs

    return owner_inputs("digits-mlp")


@pytest.fixture(scope="session")
def digits_owner() -> torch.nn.Module:
    return _digits_mlp(0)


@pytest.fixture(scope="session")
def digits_independent() -> list[torch.nn.Module]:
    """Same architecture, same data, other seeds: the hardest negatives."""
    return [_digits_mlp(seed) for seed in (11, 12, 13, 14)]


@pytest.fixture(scope="session")
def digits_finetuned(digits_owner: torch.nn.Module) -> torch.nn.Module:
    from fp_registry.scenarios import get_scenario
    from fp_registry.training import fit

    x, y = get_scenario("digits-mlp").load_data().other
    return fit(copy.deepcopy(digits_owner), "classification", x, y, epochs=3, lr=1e-3, seed=7)


@pytest.fixture(scope="session")
def ipguard_fp(digits_owner: torch.nn.Module, digits_independent: list[torch.nn.Module],
               digits: dict[str, Any]) -> Any:
    import fp_registry as fpr

    return fpr.fingerprint(digits_owner, method="ipguard", negatives=digits_independent[:3], progress=False,
                           **digits)


@pytest.fixture
def plugin() -> Iterator[Any]:
    """Register an in-test plugin object and always unregister it afterwards."""
    from fp_registry import plugins

    names: list[str] = []

    def register(obj: Any, name: str) -> None:
        plugins.load_plugins()
        plugins.pm.register(obj, name=f"undo-{name}")
        plugins.invalidate()
        names.append(f"undo-{name}")

    yield register
    for name in names:
        plugins.pm.unregister(name=name)
    plugins.invalidate()
