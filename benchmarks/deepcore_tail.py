"""Issue 7, pre-registered check 12: extra homologous lineages in the calibration of stratum S's threshold, per zoo.

Usage:
  FP_REGISTRY_CACHE=DIR .venv/bin/python benchmarks/deepcore_tail.py collect -s digits-mlp --seeds 459,460 -o T.json
  .venv/bin/python benchmarks/deepcore_tail.py rules T.json [U.json ...]
  .venv/bin/python benchmarks/deepcore_tail.py sign T.json [U.json ...]

``collect`` builds each zoo as ``fpreg evaluate -m deepcore:tail_lineages=40 --whitebox`` does (three train
replicas, the default recipe, and 40 homologous retrains with fresh seeds in split ``"tail"``), fingerprints it
once, and stores every calibration, test and tail model's kappa and white-box statistics in null-spread units, plus
the product's stratum-S threshold (``stratum_threshold``) with the tail. The core points never see the tail, so one
fingerprint serves both rules. ``rules`` scores issue 7's bar (MIR <= 0.05 and no same-architecture false match on
the test split) under:

- ST: the adopted fused decision (:mod:`deepcore_strata`), thresholds from the calibration split alone (today);
- ST+tail (candidate E): the same, but stratum S's threshold also calibrated on the tail lineages that fall in
  stratum S (tau_D and the white-box nulls unchanged). ``rules`` recomputes that threshold and checks it against
  the product's stored one;
- D: the black box alone (the tail changes nothing there).

``sign`` compares ST+tail with ST zoo by zoo: W, L and the one-sided exact sign-test p.

Why: about one homologous lineage in 75 agrees with the owner on the core points far above the rest
(benchmarks/results/deepcore.md, "Stop 29"); a calibration split's four lineages rarely show that tail.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from deepcore_rescore import owner_and_zoo  # noqa: E402
from deepcore_strata import bar, decision_rules, load_zoos, main, stratum, tally, whitebox_t  # noqa: E402

LINEAGES = 40  #: candidate E's tail (``tail_lineages="auto"`` for float owners)


def collect_zoo(scenario: str, seed: int) -> dict[str, Any]:
    """One zoo: kappa and white-box statistics of its calibration, test and tail models; the product's tau_S."""
    from fp_registry.fingerprints import fingerprint
    from fp_registry.methods import get_method_class

    owner, zoo, kw = owner_and_zoo(scenario, seed, tail_lineages=LINEAGES)
    split_zoo = zoo.replicas(get_method_class("deepcore").zoo_train_reps)
    fp = fingerprint(owner.module, method="deepcore", zoo=split_zoo, seed=seed, progress=False, whitebox=True,
                     tail_lineages=LINEAGES, **kw)
    ref = fp.meta["whitebox"]
    rows = [{"split": z.split, "name": z.name, "family": z.family, "derived": z.derived,
             "kappa": fp.verify(z.model).score, "t": whitebox_t(ref, owner.module, z.model)}
            for z in split_zoo.members if z.split in ("calibration", "test", "tail")]
    return {"rows": rows, "stratum_threshold": ref["fused"]["stratum_threshold"],
            "stratum_tail": ref["fused"]["stratum_tail"]}


def rules(paths: list[str]) -> dict[str, dict[str, Any]]:
    """Issue 7's bar under D, ST and ST+tail; fails loudly if the recomputed tau_S is not the product's."""
    from fp_registry.calibration import choose_threshold
    from fp_registry.fusion import WHITEBOX_GATE as G

    out: dict[str, dict[str, Any]] = {}
    for seed, entry in load_zoos(paths):
        rows = entry["rows"]
        cal, test = [r for r in rows if r["split"] == "calibration"], [r for r in rows if r["split"] == "test"]
        in_s = [r for r in cal + [r for r in rows if r["split"] == "tail"] if stratum(r, G) == "S"]
        tau_s = choose_threshold([r["kappa"] for r in in_s if not r["derived"]],
                                 [r["kappa"] for r in in_s if r["derived"]])
        if not math.isclose(tau_s, entry["stratum_threshold"], abs_tol=1e-9):
            raise SystemExit(f"zoo {seed}: recomputed tau_S {tau_s} is not the product's {entry['stratum_threshold']}")
        base = decision_rules(cal, G)

        def tailed(r: dict[str, Any], st: Any = base["ST"], tau: float = tau_s) -> bool:
            return r["kappa"] >= tau if stratum(r, G) == "S" else bool(st(r))

        for name, match in (("D", base["D"]), ("ST", base["ST"]), ("ST+tail", tailed)):
            tally(out, name, seed, bar(test, match))
    return out


def sign_test(paths: list[str]) -> None:
    """Prints the zoos where ST+tail meets the bar and ST does not (W), the reverse (L), and the one-sided p."""
    counts = rules(paths)
    e, st = set(counts["ST+tail"]["met_on"]), set(counts["ST"]["met_on"])
    w, lo = len(e - st), len(st - e)
    p = sum(math.comb(w + lo, k) for k in range(w, w + lo + 1)) / 2 ** (w + lo)
    print(f"ST+tail against ST: W {w} {sorted(e - st)}, L {lo} {sorted(st - e)}, one-sided sign-test p {p:.4f}")


if __name__ == "__main__":
    main(collect_zoo, rules, __doc__, {"sign": sign_test})
