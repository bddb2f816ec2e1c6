"""The local demo: protect a digits classifier with IPGuard, then check three suspects against it."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch


def run_local_demo(registry: Path, method: str = "ipguard", echo: Any = print) -> list[dict[str, Any]]:
    """Register the digits-mlp owner in a ``file://`` registry and check a copy, a fine-tune and an independent model."""
    import fp_registry as fpr
    from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
    from fp_registry.training import fit

    torch.set_num_threads(2)
    echo("training the owner and four independently trained look-alikes (cached after the first run) ...")
    owner = train_owner("digits-mlp", seed=0)
    independents = [train_owner("digits-mlp", seed=s) for s in (1, 2, 3, 4)]
    fpr.register_model(owner, f"file://{registry}", method=method, model_uri="scenario://digits-mlp?seed=0",
                       negatives=independents[:3], progress=False, **owner_inputs("digits-mlp"))
    x_other, y_other = get_scenario("digits-mlp").load_data().other
    suspects = {
        "exact copy": copy.deepcopy(owner),
        "fine-tuned copy (other data, 3 epochs)": fit(copy.deepcopy(owner), "classification", x_other, y_other,
                                                      epochs=3, seed=9),
        "independent model (same arch, seed 4)": independents[3],
    }
    rows = []
    for name, model in suspects.items():
        [v] = fpr.check_suspect(model, f"file://{registry}")
        rows.append({"suspect": name, "verdict": v.label, "score": v.score, "threshold": v.threshold,
                     "p_value": v.p_value})
    return rows
