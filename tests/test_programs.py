"""Owners stored as torch.export programs (MLflow's default format): no zoo, but references and pruning work."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fp_registry.cli import run
from fp_registry.errors import UsageError
from fp_registry.exitcodes import ExitCode
from fp_registry.loading import load_model
from fp_registry.zoo.attacks import prune


def _export(model: torch.nn.Module, path: Path) -> str:
    x = torch.zeros(2, 64)
    program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(path))
    return str(path)


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory, digits_owner: torch.nn.Module,
             digits_independent: list[torch.nn.Module]) -> dict[str, str]:
    d = tmp_path_factory.mktemp("programs")
    out = {"owner": _export(digits_owner, d / "owner.pt2"),
           "copy": _export(prune(digits_owner, None, ratio=0.3), d / "copy.pt2")}  # type: ignore[arg-type]
    out |= {f"indep{i}": _export(m, d / f"indep{i}.pt2") for i, m in enumerate(digits_independent)}
    return out


def test_a_program_loads_with_harmless_mode_switches_and_its_own_state(programs: dict[str, str]) -> None:
    model = load_model(programs["owner"])
    assert model.eval() is model and model.train() is model  # torch's program modules raise here
    raw = torch.export.load(programs["owner"]).module()
    assert list(model.state_dict()) == list(raw.state_dict())  # so owner digests stay those of the program


def test_pruning_a_program_zeroes_its_smallest_weights_and_leaves_it_intact(programs: dict[str, str]) -> None:
    model = load_model(programs["owner"])
    before = [p.detach().clone() for p in model.parameters()]
    pruned = prune(model, None, ratio=0.5)  # type: ignore[arg-type]
    matrices = [p for p in pruned.parameters() if p.ndim >= 2]
    zeros = sum(int((p == 0).sum()) for p in matrices) / sum(p.numel() for p in matrices)
    assert 0.49 <= zeros <= 0.51
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    x = torch.rand(16, 64)
    assert not torch.allclose(pruned(x), model(x))


def test_a_program_owner_gets_a_one_line_refusal_instead_of_a_zoo(programs: dict[str, str], tmp_path: Path,
                                                                  capsys: Any) -> None:
    out = tmp_path / "fp"
    code = run(["fingerprint", programs["owner"], "-m", "deepcore", "-d", "digits", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE and "\n" not in err and "torch.export program" in err and "--negative" in err
    assert not out.exists()


def test_deepcore_protects_a_program_owner_with_reference_models(programs: dict[str, str], tmp_path: Path,
                                                                 capsys: Any) -> None:
    """The no-zoo path: references calibrate, prunings of the program itself are the derived side."""
    reg = f"file://{tmp_path / 'reg'}"
    refs = [a for i in range(3) for a in ("--negative", programs[f"indep{i}"])]
    assert run(["register", programs["owner"], "--to", reg, "-m", "deepcore", "-d", "digits", *refs]) == ExitCode.OK
    capsys.readouterr()
    assert run(["check", programs["copy"], "--against", reg]) == ExitCode.MATCH
    assert run(["check", programs["indep3"], "--against", reg]) == ExitCode.OK


def test_a_verifier_that_trains_needs_derived_models_among_the_given_ones(
        digits_owner: torch.nn.Module, digits_independent: list[torch.nn.Module], digits: dict[str, Any]) -> None:
    import fp_registry as fpr

    with pytest.raises(UsageError, match="0 derived and 4 independent") as err:
        fpr.fingerprint(digits_owner, method="metav", negatives=digits_independent, progress=False, **digits)
    assert "positives=" in err.value.one_line()


def test_whitebox_command_reads_the_input_shape_of_programs(programs: dict[str, str], capsys: Any) -> None:
    import json

    refs = [a for i in (1, 2) for a in ("-i", programs[f"indep{i}"])]
    scores = {}
    for suspect in ("copy", "indep0"):
        assert run(["whitebox", programs["owner"], programs[suspect], *refs]) == ExitCode.OK
        scores[suspect] = json.loads(capsys.readouterr().out)
    assert scores["copy"]["weights"]["score"] > scores["indep0"]["weights"]["score"]
    assert scores["copy"]["cka"]["score"] > scores["indep0"]["cka"]["score"]
