"""Plugin: registers the built-in zoo attacks and independent-model recipes (fp_registry.zoo.attacks)."""
from __future__ import annotations

from typing import Any

from fp_registry import hookimpl


@hookimpl
def register_attacks(register: Any) -> None:
    # Imported here so `fpreg --help` never pays for torch.
    from fp_registry.zoo.attacks import BUILTIN

    for name, (fn, family, derived) in BUILTIN.items():
        register(name, fn, family=family, derived=derived)
