"""Process exit codes of ``fpreg`` (documented in the README)."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    #: checked, no match
    OK = 0
    #: a suspect matched a protected model
    MATCH = 1
    #: a verifier, backend, model file or plugin failed
    ERROR = 2
    #: nothing was checked (no applicable entries or methods)
    NOTHING_CHECKED = 3
    #: bad invocation (unknown option, method, task or data)
    USAGE = 4
