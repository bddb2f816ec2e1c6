"""Tests of the TAFA reconstruction: exact boundary search, data-free fingerprints, copies vs independent models."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import fp_registry as fpr
from fp_registry.algorithms.relu_boundary import project_to_boundary
from fp_registry.errors import NotApplicableError
from fp_registry.scenarios import get_scenario

torch.set_num_threads(1)
QUICK_EPOCHS = {"digits-mlp": 8, "diabetes-fcn": 40, "digits-gen": 6}  # diabetes: 10 left two seeds alike
_MODELS: dict[tuple[str, int], nn.Module] = {}


def quick_owner(name: str, seed: int) -> nn.Module:
    """A briefly trained scenario model (the test home is isolated, so the scenario cache is always cold)."""
    if (name, seed) not in _MODELS:
        sc = get_scenario(name)
        x, y = sc.load_data().owner
        if sc.task == "generation":
            x, y = None, x
        _MODELS[name, seed] = sc.train(sc.build(seed), x, y, seed, epochs=QUICK_EPOCHS[name])
    return _MODELS[name, seed]


def two_neuron_net() -> nn.Module:
    """Kinks exactly on x1 = 0.5 (neuron 0) and x1 + x2 = 1 (neuron 1)."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([-0.5, -1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -2.0]]))
        net[2].bias.zero_()
    return net


LINES = [(torch.tensor([1.0, 0.0]), 0.5), (torch.tensor([1.0, 1.0]) / 2 ** 0.5, 1 / 2 ** 0.5)]


def signed_distance(x: torch.Tensor, line: int) -> torch.Tensor:
    normal, offset = LINES[line]
    return x @ normal - offset


@pytest.mark.parametrize("neuron", [0, 1])
def test_newton_projection_lands_on_known_kink(neuron: int) -> None:
    net = two_neuron_net()
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(neuron)) * 2
    x_star, ok = project_to_boundary(net, x, torch.full((50,), neuron), tol=1e-6)
    assert bool(ok.all())
    assert float(signed_distance(x_star, neuron).abs().max()) < 1e-5


def test_pairs_straddle_the_known_kinks() -> None:
    fp = fpr.fingerprint(two_neuron_net(), method="tafa", task="regression", input_shape=(2,),
                         negatives=[], progress=False, n_pairs=40, d=0.05)
    p = fp.tensors["pairs"]
    assert len(p["x_star"]) >= 20
    dist = torch.stack([signed_distance(p["x_star"], k).abs() for k in (0, 1)], 1)
    line = dist.argmin(1)
    assert float(dist.min(1).values.max()) < 1e-4  # every x* on one of the two known lines
    rows = torch.arange(len(line))
    side_p = torch.stack([signed_distance(p["x_plus"], k) for k in (0, 1)], 1)[rows, line]
    side_m = torch.stack([signed_distance(p["x_minus"], k) for k in (0, 1)], 1)[rows, line]
    assert bool((side_p * side_m < 0).all())  # x+ and x- on opposite sides of the kink
    assert bool((p["delta"].abs().flatten() > 1e-4).all())  # the output shows the kink


def test_gelu_network_is_refused() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    with pytest.raises(NotApplicableError, match="GELU"):
        fpr.fingerprint(net, method="tafa", task="regression", input_shape=(4,), negatives=[], progress=False)


@pytest.mark.parametrize("name", ["digits-mlp", "diabetes-fcn", "digits-gen"])
def test_data_free_copy_matches_independent_does_not(name: str) -> None:
    sc = get_scenario(name)
    owner = quick_owner(name, 0)
    shape = (sc.latent_dim,) if sc.task == "generation" else None
    fp = fpr.fingerprint(owner, method="tafa", task=sc.task, input_shape=shape, negatives=[quick_owner(name, 1)],
                         progress=False)  # no data at all
    assert fp.info["n_pairs"] >= 32
    assert fp.verify(copy.deepcopy(owner)).score == pytest.approx(1.0)
    other = fp.verify(quick_owner(name, 2)).score
    assert other < 0.5


def test_softmax_api_gives_the_same_evidence_as_logits(tmp_path: object) -> None:
    owner = quick_owner("digits-mlp", 0)
    x, y = get_scenario("digits-mlp").load_data().owner
    fp = fpr.fingerprint(owner, method="tafa", task="classification", data=x, labels=y, negatives=[],
                         progress=False, n_pairs=64)
    ft = copy.deepcopy(owner)
    with torch.no_grad():
        ft.net[0].weight.add_(0.01 * torch.randn_like(ft.net[0].weight))

    def softmax_api(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(ft(torch.as_tensor(batch)), 1).numpy()

    by_logits = fp.verify(ft).score
    assert fp.verify(softmax_api).score == pytest.approx(by_logits, abs=0.05)
    loaded = fpr.load_fingerprint(fp.save(tmp_path / "fp"))  # type: ignore[operator]
    assert loaded.verify(ft).score == pytest.approx(by_logits)


@pytest.mark.parametrize("name,blur", [("digits-mlp", 8), ("digits-gen", 4)])
def test_function_copy_without_the_kinks_matches_on_response(name: str, blur: int) -> None:
    """A copy that keeps the owner's function but blurs its kinks (what distillation does) still matches."""
    sc = get_scenario(name)
    owner = quick_owner(name, 0)
    shape = (sc.latent_dim,) if sc.task == "generation" else None
    fp = fpr.fingerprint(owner, method="tafa", task=sc.task, input_shape=shape, negatives=[], progress=False)
    dim = int(fp.spec["input_shape"][0])
    # 64 fixed offsets of norm ~3·blur·d around every input: the average is the owner's function seen
    # through a blur much wider than the pair distance d, so its kinks no longer show inside a pair
    eps = torch.randn(64, dim, generator=torch.Generator().manual_seed(0)) * 3 * blur * fp.info["d_abs"] / dim ** 0.5

    def blurred(batch: np.ndarray) -> np.ndarray:
        b = torch.as_tensor(batch)
        with torch.no_grad():
            out = owner((b[:, None, :] + eps[None]).reshape(-1, dim))
        return out.reshape(len(b), len(eps), -1).mean(1).numpy()

    copy_ = fp.verify(blurred)
    other = fp.verify(quick_owner(name, 2))
    assert copy_.evidence["kink_rate"] < 0.25  # the kink statistic alone misses this copy
    assert copy_.score >= 0.75
    assert copy_.score > other.score + 0.25
