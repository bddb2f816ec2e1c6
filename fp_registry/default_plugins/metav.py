"""Plugin: registers the MetaV method (implementation in fp_registry.algorithms.metav)."""
from __future__ import annotations

from typing import Any

from fp_registry import hookimpl


@hookimpl
def register_methods(register: Any) -> None:
    # Imported here, not at module level, so `fpreg --help` never pays for torch.
    from fp_registry.algorithms.metav import MetaV

    register(MetaV)
