"""Plugin: registers the TAFA reconstruction (implementation in fp_registry.algorithms.tafa)."""
from __future__ import annotations

from typing import Any

from fp_registry import hookimpl


@hookimpl
def register_methods(register: Any) -> None:
    # Imported here, not at module level, so `fpreg --help` never pays for torch.
    from fp_registry.algorithms.tafa import TAFA

    register(TAFA)


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.command(name="tafa-curve")
    @click.option("--scenario", "-s", "scenarios", multiple=True,
                  default=("digits-mlp", "diabetes-fcn", "digits-gen"), show_default=True)
    @click.option("--d", "ds", default="0.002,0.005,0.01,0.02,0.05,0.1", show_default=True,
                  help="Comma-separated pair distances (relative to the mean anchor norm).")
    @click.option("--out", "-o", default="tafa_curve", show_default=True, help="Writes OUT.png and OUT.json.")
    @click.option("--zoo", is_flag=True,
                  help="Use the shared zoo's train + calibration splits (how the default d is chosen).")
    def tafa_curve(scenarios: tuple[str, ...], ds: str, out: str, zoo: bool) -> None:
        """ARUC and ROC-AUC of TAFA versus the pair distance d on held-out derived/independent models."""
        from fp_registry.algorithms.tafa_curve import main

        rows = main(list(scenarios), [float(v) for v in ds.split(",")], out, zoo=zoo)
        for r in rows:
            click.echo(f"{r['scenario']:13s} d={r['d']:<7g} pairs={r['n_pairs']:<4d} ROC-AUC={r['roc_auc']:.3f} "
                       f"ARUC={r['aruc']:.3f} TPR={r['tpr']:.2f} TNR={r['tnr']:.2f} (tau={r['threshold']:.3f})")
