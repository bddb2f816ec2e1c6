"""The fused black-box + white-box row of an evaluation: the same suspects, scored with :mod:`fp_registry.fusion`."""
from __future__ import annotations

import time
from typing import Any

from ..zoo.spec import Zoo


def fused_rows(fp: Any, owner_model: Any, zoo: Zoo, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``rows`` (the black-box rows of the test split, same order) rescored with the fused score; None if it is
    not calibrated (no white-box reference: the owner or the calibration models have no weights)."""
    from ..fusion import fused_evidence
    from ..whitebox import check

    ref = (fp.meta or {}).get("whitebox")
    if not ref or "fused" not in ref:
        return None
    out = []
    for z, row in zip((m for m in zoo.members if m.split == "test"), rows):
        start = time.perf_counter()
        fused = fused_evidence(ref, fp.calibration, row["score"], check(ref, owner_model, z.model))
        extra = time.perf_counter() - start  # the white-box part of the check, on top of the black-box verify
        out.append({**row, "score": fused["score"], "is_match": fused["match"], "seconds": row["seconds"] + extra,
                    **({"stratum": fused["stratum"]} if "stratum" in fused else {})})
    return out
