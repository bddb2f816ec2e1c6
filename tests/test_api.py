"""The public Python API contract: fingerprint -> save -> load -> verify, on real trained models."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

import fp_registry as fpr
from fp_registry.errors import ShapeMismatchError, UnknownMethodError, UsageError


def test_verdict_fields_and_decisions(ipguard_fp: Any, digits_owner: torch.nn.Module,
                                      digits_finetuned: torch.nn.Module,
                                      digits_independent: list[torch.nn.Module]) -> None:
    copy_v = ipguard_fp.verify(copy.deepcopy(digits_owner))
    assert copy_v.is_match and copy_v.score == 1.0
    assert copy_v.method == "ipguard" and copy_v.n_queries == 100 and copy_v.seconds >= 0
    assert 0.0 <= copy_v.threshold <= 1.0 and copy_v.evidence["n_points"] == 100
    assert ipguard_fp.verify(digits_finetuned).is_match
    unseen = digits_independent[3]  # not used for calibration
    v = ipguard_fp.verify(unseen)
    assert not v.is_match and v.score < copy_v.score
    assert v.p_value is not None and 0 < v.p_value <= 1


def test_p_value_is_calibrated_on_negatives(ipguard_fp: Any, digits_owner: torch.nn.Module) -> None:
    cal = ipguard_fp.calibration
    assert len(cal.negative_scores) == 3
    assert ipguard_fp.threshold > max(cal.negative_scores)
    # an exact copy outscores every calibration negative: the smallest reachable p-value
    assert ipguard_fp.verify(digits_owner).p_value == pytest.approx(1 / 4)


def test_numpy_callable_and_uri_suspects(ipguard_fp: Any, digits_owner: torch.nn.Module, tmp_path: Any) -> None:
    def api(batch: np.ndarray) -> np.ndarray:  # a black box that only speaks numpy
        assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
        with torch.no_grad():
            return digits_owner(torch.from_numpy(batch)).numpy()

    assert ipguard_fp.verify(api).is_match
    from fp_registry.modelio import save_model

    save_model(digits_owner, tmp_path / "m")
    assert ipguard_fp.verify(str(tmp_path / "m")).is_match


def test_save_load_round_trip(ipguard_fp: Any, digits_independent: list[torch.nn.Module], tmp_path: Any) -> None:
    ipguard_fp.save(tmp_path / "fp")
    loaded = fpr.load_fingerprint(tmp_path / "fp")
    a, b = ipguard_fp.verify(digits_independent[0]), loaded.verify(digits_independent[0])
    assert (a.score, a.threshold, a.p_value) == (b.score, b.threshold, b.p_value)
    assert loaded.digest == ipguard_fp.digest and "tensor" not in repr(loaded)


def test_wrong_output_size_is_a_clear_error(ipguard_fp: Any) -> None:
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(ShapeMismatchError, match="returns 3 classes"):
        ipguard_fp.verify(wrong)


def test_wrong_input_size_is_a_clear_error(ipguard_fp: Any) -> None:
    with pytest.raises(ShapeMismatchError, match="failed on inputs"):
        ipguard_fp.verify(torch.nn.Linear(30, 10))


def test_bad_arguments(digits_owner: torch.nn.Module, digits: dict[str, Any]) -> None:
    with pytest.raises(UnknownMethodError) as err:
        fpr.fingerprint(digits_owner, method="nope", **digits)
    assert "available: " in err.value.one_line() and "ipguard" in err.value.one_line()
    with pytest.raises(UsageError, match="unknown task"):
        fpr.fingerprint(digits_owner, method="ipguard", task="ranking", data=digits["data"])
    with pytest.raises(UsageError, match="unknown setting"):  # checked before any zoo is built
        fpr.fingerprint(digits_owner, method="ipguard", bogus=1, negatives=[], **digits)


def test_ipguard_refuses_regression() -> None:
    from fp_registry.errors import NotApplicableError

    model = torch.nn.Linear(10, 1)
    with pytest.raises(NotApplicableError, match="does not support task"):
        fpr.fingerprint(model, method="ipguard", task="regression", data=np.zeros((8, 10), np.float32),
                        negatives=[])


def test_numpy_and_torch_data_give_the_same_fingerprint(digits_owner: torch.nn.Module,
                                                        digits: dict[str, Any]) -> None:
    a = fpr.fingerprint(digits_owner, method="ipguard", negatives=[], seed=3, progress=False, **digits)
    as_np = {**digits, "data": digits["data"].numpy(), "labels": digits["labels"].numpy()}
    b = fpr.fingerprint(digits_owner, method="ipguard", negatives=[], seed=3, progress=False, **as_np)
    assert torch.equal(a.tensors["queries"]["x"], b.tensors["queries"]["x"])
