"""The memory benchmark's machinery on a tiny owner: steps, rows, ratios and the child protocol (no sizes)."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"


@pytest.fixture(scope="module")
def bench() -> Any:
    spec = importlib.util.spec_from_file_location("fp_memory_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through the module
    spec.loader.exec_module(module)
    return module


def _mlp(seed: int) -> Any:
    from fp_registry import nets

    torch.manual_seed(seed)
    return nets.build("mlp", {"in_features": 8, "hidden": [16], "out_features": 4}).eval()


@pytest.fixture(scope="module")
def measured(bench: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[dict[str, Any]]]:
    """Two repeats of every step, run in this process (the benchmark runs each in a fresh one)."""
    from fp_registry.modelio import save_model

    tmp = tmp_path_factory.mktemp("memory")
    owner, x = _mlp(0), torch.rand(64, 8)
    save_model(owner, tmp / "owner")
    save_model(_mlp(1), tmp / "independent")
    inputs = bench.save_inputs(tmp / "inputs.safetensors", x, owner(x).argmax(1).detach())
    case = bench.Case("tiny", "ipguard:n_queries=20:steps=20", str(tmp / "owner"), inputs, "classification",
                      str(tmp / "owner"), str(tmp / "work"), negatives=[str(tmp / "independent")])
    # the steps themselves, without run_task's shared imports and thread setting: those belong to a fresh process
    rows = bench.measure([case], repeats=2, runner=lambda spec: bench.TASKS[spec["kind"]](spec))
    return case, rows


def test_a_row_holds_every_quantity_and_ratios_of_its_own_medians(bench: Any, measured: Any) -> None:
    _, [row] = measured
    assert row["status"] == "ok" and row["method"] == "ipguard:n_queries=20:steps=20"
    for key in ("forward_mb", "verify_mb", "fingerprint_mb", "zoo_mb", "baseline_mb"):
        assert isinstance(row[key], float) and row[key] >= 0  # in this warm process a step may add no pages
    assert row["verify_forward_ratio"] == bench.ratio(row["verify_mb"], row["forward_mb"])
    assert row["fingerprint_baseline_ratio"] == bench.ratio(row["fingerprint_mb"], row["baseline_mb"])
    assert set(row["repeats"]) == {"baseline", "fingerprint", "forward", "verify"}
    for kind, results in row["repeats"].items():
        assert len(results) == 2 and all(r["status"] == "ok" and r["marks"]["peak"] == r["peak_mb"] for r in results)
        assert row["spread_mb"][kind] == max(r["peak_mb"] for r in results) - min(r["peak_mb"] for r in results)
    assert "loaded" in row["repeats"]["verify"][0]["marks"] and "zoo" in row["repeats"]["fingerprint"][0]["marks"]


def test_ratio_and_table_row(bench: Any, measured: Any) -> None:
    assert bench.ratio(3.0, 2.0) == 1.5 and bench.ratio(3.0, 0.0) is None and bench.ratio(None, 2.0) is None
    _, [row] = measured
    cells = bench.row(row).strip("|").split("|")
    assert len(cells) == bench.HEADER.splitlines()[0].count("|") - 1
    skipped = bench.row({"scenario": "s", "method": "deepcore", "status": "not applicable"})
    assert skipped.count("|") == bench.HEADER.splitlines()[0].count("|")


def test_a_fresh_child_verifies_and_reports_a_positive_peak(bench: Any, measured: Any) -> None:
    case, _ = measured
    result = bench.run_child(case.spec("verify"))
    assert result["status"] == "ok" and result["peak_mb"] > 0 and math.isfinite(result["base_mb"])
    assert result["marks"]["loaded"] <= result["peak_mb"] and isinstance(result["hwm_reset"], bool)
    assert isinstance(result["new_packages"], list) and result["new_modules"] >= 0
