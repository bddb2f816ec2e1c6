"""Issue 7, pre-registered check 10: core points selected by contrast (copies keep, look-alikes lose), per zoo.

Usage:
  FP_REGISTRY_CACHE=DIR .venv/bin/python benchmarks/deepcore_contrast_strata.py collect -s digits-mlp \
      --seeds 339,340 -o C.json
  .venv/bin/python benchmarks/deepcore_contrast_strata.py rules C.json [D.json ...]
  .venv/bin/python benchmarks/deepcore_contrast_strata.py sign C.json [D.json ...]

``collect`` fingerprints each zoo twice, as ``fpreg evaluate -m deepcore --whitebox`` does (three train replicas,
the white-box reference from the calibration independents), the rest of the recipe the default: with
``select="least"`` (keep the candidates the train split's look-alikes agree least on; the default until stop
28) and with ``select="contrast"`` (also ask that the train split's copies agree; the default since
pre-registration 11). For every calibration and test model it stores both DeepCore scores (kappa) and the
white-box statistics in null-spread units, which do not depend on the core points. ``rules`` scores issue 7's bar
(MIR <= 0.05 and no same-architecture false match, thresholds from the calibration split only) under the adopted
fused decision (ST, :mod:`deepcore_strata`) and under the black box alone (D), for both selections. ``sign``
compares the two selections zoo by zoo (pre-registration 11): W, L and the one-sided exact sign-test p.

Why contrast again: it was checked on 2026-11-24 (before stop 20), before the ensemble optimisation and the stratum
rule existed, and met the bar on one zoo more than the default where its rule asked for three. Under ST every miss
left on the development and fresh zoos of stop 26 is a label-only extraction student; the train split holds such
students, and ``least`` never asks the copies anything.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from deepcore_rescore import owner_and_zoo  # noqa: E402
from deepcore_strata import bar, decision_rules, load_zoos, main, tally, whitebox_t  # noqa: E402

#: the two selections compared, both named so that a change of the default cannot swap them
SELECTIONS = {"least": {"select": "least"}, "contrast": {"select": "contrast"}}


def collect_zoo(scenario: str, seed: int) -> dict[str, Any]:
    """One zoo: every calibration and test model's kappa under each selection, and its white-box statistics."""
    from fp_registry.fingerprints import fingerprint
    from fp_registry.methods import get_method_class

    owner, zoo, kw = owner_and_zoo(scenario, seed)
    split_zoo = zoo.replicas(get_method_class("deepcore").zoo_train_reps)
    fps = {name: fingerprint(owner.module, method="deepcore", zoo=split_zoo, seed=seed, progress=False,
                             whitebox=(name == "least"), **kw, **settings)
           for name, settings in SELECTIONS.items()}
    ref = fps["least"].meta["whitebox"]
    return {"rows": [{"split": z.split, "name": z.name, "family": z.family, "derived": z.derived,
                      "t": whitebox_t(ref, owner.module, z.model),
                      "kappa": {name: fp.verify(z.model).score for name, fp in fps.items()}}
                     for z in split_zoo.members if z.split in ("calibration", "test")]}


def rules(paths: list[str]) -> dict[str, dict[str, Any]]:
    """Issue 7's bar under D and ST, for each selection's kappa."""
    from fp_registry.fusion import WHITEBOX_GATE

    out: dict[str, dict[str, Any]] = {}
    for seed, entry in load_zoos(paths):
        for sel in SELECTIONS:
            rows = [dict(r, kappa=r["kappa"][sel]) for r in entry["rows"]]
            test = [r for r in rows if r["split"] == "test"]
            matchers = decision_rules([r for r in rows if r["split"] == "calibration"], WHITEBOX_GATE)
            for rule in ("D", "ST"):
                tally(out, f"{rule}/{sel}", seed, bar(test, matchers[rule]))
    return out


def sign_test(paths: list[str]) -> None:
    """Prints, under D and ST, the zoos where contrast meets the bar and least does not (W), the reverse (L), and p."""
    counts = rules(paths)
    for rule in ("D", "ST"):
        c, least = set(counts[f"{rule}/contrast"]["met_on"]), set(counts[f"{rule}/least"]["met_on"])
        w, lo = len(c - least), len(least - c)
        p = sum(math.comb(w + lo, k) for k in range(w, w + lo + 1)) / 2 ** (w + lo)
        print(f"{rule}: W {w} {sorted(c - least)}, L {lo} {sorted(least - c)}, one-sided sign-test p {p:.4f}")


if __name__ == "__main__":
    main(collect_zoo, rules, __doc__, {"sign": sign_test})
