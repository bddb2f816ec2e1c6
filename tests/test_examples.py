"""The quickstart example runs on the local backend and reaches the documented verdicts."""
from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart(tmp_path: Path, capsys: Any) -> None:
    module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    assert module["main"](str(tmp_path / "registry")) == 0
    out = capsys.readouterr().out
    assert "exact copy             verdict=match" in out
    assert "fine-tuned copy        verdict=match" in out
    assert "independent (seed 5)   verdict=clean" in out
