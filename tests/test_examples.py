"""The quickstart example (the same flow as ``fpreg demo``) runs on the local backend and reaches the right verdicts."""
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
