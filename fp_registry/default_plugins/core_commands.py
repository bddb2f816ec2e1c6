"""Built-in commands that ship as a plugin: ``fpreg protect`` (watermarks) and ``fpreg demo``."""
from __future__ import annotations

from typing import Any

import click

from fp_registry import hookimpl


@click.command()
@click.argument("model")
@click.option("--method", "-m", default="passport", show_default=True)
@click.option("--task", "-t", default="classification", show_default=True)
@click.option("--data", "-d", required=True, help="Bundled dataset name or .npz with X and y.")
@click.option("--out", "-o", default="protected", show_default=True, type=click.Path(),
              help="Directory for the deployable model and the private key.")
@click.option("--signature", default="fp-registry", show_default=True, help="Owner signature to embed.")
@click.option("--seed", default=0, show_default=True)
def protect(model: str, method: str, task: str, data: str, out: str, signature: str, seed: int) -> None:
    """Embed a watermark while training MODEL; writes OUT/model (deploy) and OUT/key (keep private)."""
    from pathlib import Path

    from fp_registry.data import load_data_arg
    from fp_registry.fingerprints import protect as protect_model
    from fp_registry.modelio import save_model

    x, y = load_data_arg(data)
    deployed, key = protect_model(model, method=method, task=task, data=x, labels=y, seed=seed,
                                  signature=signature)
    save_model(deployed, Path(out) / "model")
    key.save(Path(out) / "key")
    click.echo(f"deployable model: {Path(out) / 'model'}\nprivate key (never publish it): {Path(out) / 'key'}")


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(protect)
