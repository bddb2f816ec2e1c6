"""Plugin: the ``fpreg whitebox`` command (CKA + weight-Gram evidence for two models with weights)."""
from __future__ import annotations

import json
from typing import Any

import click

from fp_registry import hookimpl


@click.command("whitebox")
@click.argument("owner")
@click.argument("suspect")
@click.option("--independent", "-i", multiple=True, help="An independent model (path or URI) for the p-value null; "
              "repeat it (p-values need at least two).")
@click.option("--n-probes", default=64, show_default=True, help="Random probe inputs (token ids for token models).")
@click.option("--seq-len", default=16, show_default=True, help="Probe length for token models.")
@click.option("--seed", default=0, show_default=True)
def whitebox(owner: str, suspect: str, independent: tuple[str, ...], n_probes: int, seq_len: int, seed: int) -> None:
    """White-box evidence that SUSPECT derives from OWNER: per-layer CKA and permutation-invariant weight Grams."""
    from fp_registry import whitebox as W
    from fp_registry.loading import load_model

    own, sus = load_model(owner), load_model(suspect)
    x = W.probe_inputs(own, n_probes, seq_len, seed)
    nulls = W.fit_nulls(own, [load_model(i) for i in independent], x) if independent else None
    click.echo(json.dumps(W.evidence(own, sus, x, nulls), indent=2))


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(whitebox)
