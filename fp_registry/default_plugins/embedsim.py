"""Plugin: registers EmbedSim, the embedding-geometry fingerprint (fp_registry.algorithms.embedsim)."""
from __future__ import annotations

from typing import Any

from fp_registry import hookimpl


@hookimpl
def register_methods(register: Any) -> None:
    # Imported here, not at module level, so `fpreg --help` never pays for torch.
    from fp_registry.algorithms.embedsim import EmbedSim

    register(EmbedSim)
