"""Passport-aware Normalization watermark: unchanged deployed structure, signature, verification, forgery."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import fp_registry as fpr
from fp_registry.algorithms.passport import binomial_sf, encode_signature
from fp_registry.errors import ArtifactError
from fp_registry.nets import SmallCNN
from fp_registry.training import fit


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    from fp_registry.data import load_dataset

    return load_dataset("digits").owner


def _trained(seed: int, norm: str = "bn", epochs: int = 3) -> SmallCNN:
    x, y = _data()
    torch.manual_seed(seed)
    return fit(SmallCNN(channels=[16, 16], norm=norm), "classification", x, y, epochs=epochs, lr=2e-3, seed=seed)


@pytest.fixture(scope="module")
def protected() -> dict[str, Any]:
    torch.set_num_threads(1)
    x, y = _data()
    base = _trained(0)
    deployed, key = fpr.protect(base, method="passport", data=x, labels=y, seed=0, epochs=6,
                                signature="owner-2026", progress=False)
    return {"base": base, "deployed": deployed, "key": key, "x": x, "y": y}


def test_signature_encoding_is_a_hash_of_the_text() -> None:
    bits = encode_signature("owner-2026", 96)
    assert set(bits.tolist()) <= {-1.0, 1.0} and torch.equal(bits, encode_signature("owner-2026", 96))
    assert torch.equal(encode_signature("owner-2026", 32), bits[:32])  # a prefix, whatever the layer width
    # any other identity, even one character away, differs in about half of the bits (not in one, as with ASCII)
    for other in ("owner-2027", "Owner-2026", "attacker-2026"):
        assert 0.3 < float((encode_signature(other, 96) != bits).float().mean()) < 0.7
    assert 0.3 < float((encode_signature("owner-2026", 96, layer=1) != bits).float().mean()) < 0.7
    with pytest.raises(ValueError):
        encode_signature("", 8)


def test_key_whose_bits_are_not_its_signature_is_rejected(protected: dict[str, Any]) -> None:
    key = protected["key"]
    assert key.verify(protected["deployed"]).evidence["signature_bound"] is True
    forged = copy.copy(key)
    forged.tensors = {k: dict(g) for k, g in key.tensors.items()}
    bits = forged.tensors["layer0"]["bits"].clone()
    bits[:2] = -bits[:2]  # ambiguity attack II's target: the owner's bits with a few flipped
    forged.tensors["layer0"]["bits"] = bits
    with pytest.raises(ArtifactError, match="not the encoding of its signature"):
        forged.verify(protected["deployed"])
    claimed = copy.copy(key)
    claimed.info = dict(key.info, signature="attacker-2026")  # the owner's bits claimed under another identity
    with pytest.raises(ArtifactError):
        claimed.verify(protected["deployed"])


def test_binomial_tail() -> None:
    assert binomial_sf(0, 10) == pytest.approx(1.0)
    assert binomial_sf(10, 10) == pytest.approx(2 ** -10)
    assert binomial_sf(9, 10) == pytest.approx(11 / 1024)


def test_deployed_structure_unchanged(protected: dict[str, Any]) -> None:
    base, dep = protected["base"], protected["deployed"]
    assert type(dep) is type(base)
    assert list(dep.state_dict()) == list(base.state_dict())
    assert [type(m) for m in dep.modules()] == [type(m) for m in base.modules()]
    assert not torch.equal(dep.features[0].weight, base.features[0].weight)  # it was trained


def test_protected_model_verifies(protected: dict[str, Any]) -> None:
    v = protected["key"].verify(protected["deployed"])
    assert v.evidence["sign_detection"] >= 0.95 and v.p_value < 1e-6 and v.is_match
    assert v.evidence["trigger_accuracy"] >= 0.9
    assert protected["key"].threshold == pytest.approx(0.9)


def test_survives_fine_tuning(protected: dict[str, Any]) -> None:
    ft = fit(copy.deepcopy(protected["deployed"]), "classification", protected["x"], protected["y"],
             epochs=2, lr=1e-3, seed=7)
    v = protected["key"].verify(ft)
    assert v.evidence["sign_detection"] >= 0.95 and v.p_value < 1e-6


def test_independent_model_does_not_match(protected: dict[str, Any]) -> None:
    v = protected["key"].verify(_trained(11))
    assert not v.is_match and v.p_value > 1e-3


def test_forged_passports_do_not_match(protected: dict[str, Any]) -> None:
    key = protected["key"]
    forged = copy.copy(key)
    gen = torch.Generator().manual_seed(123)
    forged.tensors = {k: dict(g) for k, g in key.tensors.items()}
    for name, group in forged.tensors.items():
        if name.startswith("layer"):
            group["p_gamma"] = torch.rand(group["p_gamma"].shape, generator=gen) * 2 - 1
    v = forged.verify(protected["deployed"])
    assert not v.is_match and v.p_value > 1e-3


def test_black_box_trigger_set(protected: dict[str, Any]) -> None:
    dep = protected["deployed"]
    v = protected["key"].verify(lambda a: dep(torch.as_tensor(a)).detach().numpy())
    assert v.evidence["mode"] == "black-box" and v.is_match and v.p_value < 1e-6


def test_key_save_load(protected: dict[str, Any], tmp_path: Any) -> None:
    protected["key"].save(tmp_path / "key")
    key = fpr.load_fingerprint(tmp_path / "key")
    assert key.method == "passport"
    assert key.verify(protected["deployed"]).score == pytest.approx(protected["key"].verify(protected["deployed"]).score)


def test_groupnorm_model() -> None:
    x, y = _data()
    base = _trained(2, norm="gn", epochs=2)
    dep, key = fpr.protect(base, method="passport", data=x, labels=y, seed=1, epochs=6, progress=False)
    assert type(dep.features[1]) is torch.nn.GroupNorm
    assert list(dep.state_dict()) == list(base.state_dict())
    assert key.verify(dep).evidence["sign_detection"] >= 0.95
