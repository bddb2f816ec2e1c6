"""Plain tables and JSON for the CLI (no dependency, so ``fpreg`` stays fast to start)."""
from __future__ import annotations

import json
import math
from typing import Any, Iterable

import click


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return ",".join(fmt(v) for v in value)
    return str(value)


def table(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    """Left-aligned text table with a header and a rule."""
    body = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in body]) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(row) for row in body])


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


VERDICT_COLUMNS = ["suspect", "entry_id", "verdict", "score", "threshold", "p_value", "method", "n_queries", "seconds"]


def verdict_rows(verdicts: list[Any]) -> list[dict[str, Any]]:
    return [{**v.to_dict(), "fused": _fused(v)} for v in verdicts]


def verdict_columns(verdicts: list[Any]) -> list[str]:
    """The verdict table's columns, with ``fused`` only when some verdict carries fused white-box evidence."""
    return VERDICT_COLUMNS + (["fused"] if any(_fused(v) for v in verdicts) else [])


def _fused(verdict: Any) -> str:
    """``match (7.31)`` from ``evidence.whitebox.fused`` (its own decision, beside the verdict), else empty; with
    the stratum that decided under the ``strata`` rule, e.g. ``match (3.2, W)``."""
    fused = ((getattr(verdict, "evidence", None) or {}).get("whitebox") or {}).get("fused")
    if not fused:
        return ""
    where = f", {fused['stratum']}" if fused.get("stratum") else ""
    return f"{'match' if fused['match'] else 'clean'} ({fmt(fused['score'])}{where})"
