"""Quickstart: fingerprint a digits classifier, then check an exact copy, a fine-tuned copy and an independent model."""
from __future__ import annotations

import copy
import sys
import tempfile

import torch

import fp_registry as fpr
from fp_registry.scenarios import get_scenario, owner_inputs, train_owner
from fp_registry.training import fit


def main(registry: str) -> int:
    torch.set_num_threads(2)
    owner = train_owner("digits-mlp", seed=0)
    independents = [train_owner("digits-mlp", seed=s) for s in (1, 2, 3, 4, 5)]
    entry = fpr.register_model(owner, f"file://{registry}", method="ipguard", model_uri="digits-mlp/owner",
                               negatives=independents[:4], progress=False, **owner_inputs("digits-mlp"))
    x_other, y_other = get_scenario("digits-mlp").load_data().other
    finetuned = fit(copy.deepcopy(owner), "classification", x_other, y_other, epochs=3, seed=9)
    suspects = {"exact copy": copy.deepcopy(owner), "fine-tuned copy": finetuned,
                "independent (seed 5)": independents[4]}
    print(f"protected {entry.model_uri} in {registry}")
    for name, model in suspects.items():
        [v] = fpr.check_suspect(model, f"file://{registry}")
        print(f"{name:22s} verdict={v.label:6s} score={v.score:.3f} threshold={v.threshold:.3f} p={v.p_value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fp-registry-")))
