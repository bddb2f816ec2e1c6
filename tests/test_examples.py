"""The examples run as a user runs them and reach the right verdicts (quickstart: the flow of ``fpreg demo``)."""
from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart(tmp_path: Path, capsys: Any) -> None:
    module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    assert module["main"](str(tmp_path / "registry")) == 0
    out = capsys.readouterr().out
    assert re.search(r"exact copy\s+verdict=match", out)
    assert re.search(r"fine-tuned copy.*verdict=match", out)
    assert re.search(r"independent model.*verdict=clean", out)


def test_protect_own_model(capsys: Any) -> None:
    """The own-data example starts its own MLflow server on sqlite and reaches the right verdicts."""
    import pytest

    pytest.importorskip("mlflow")
    module = runpy.run_path(str(ROOT / "examples" / "protect_own_model.py"))
    assert module["main"]() == 0
    out = capsys.readouterr().out
    assert re.search(r"wine-classifier/1\s+verdict=skipped", out)
    assert re.search(r"pirate-wine-finetuned/1\s+verdict=match", out)
    assert re.search(r"someone-wine-independent/1\s+verdict=clean", out)
