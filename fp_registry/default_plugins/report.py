"""Default ``verdict_ready`` and ``should_check`` plugins: a log line per verdict, check every upload."""
from __future__ import annotations

import logging
from typing import Any

from fp_registry import hookimpl

log = logging.getLogger("fp_registry.verdicts")


@hookimpl(trylast=True)
def should_check(event: Any, config: dict[str, Any]) -> bool | None:
    """Check every upload unless another plugin says otherwise."""
    return True


@hookimpl
def verdict_ready(verdict: Any, entry: Any, event: Any, config: dict[str, Any]) -> None:
    """One log line per verdict (never the fingerprint itself: it is a secret)."""
    level = logging.WARNING if verdict.label == "match" else logging.INFO
    matched = entry.entry_id if entry is not None else "-"
    log.log(level, "fp-registry verdict=%s suspect=%s protected=%s method=%s score=%.4f p=%s",
            verdict.label, verdict.suspect, matched, verdict.method, verdict.score, verdict.p_value)
