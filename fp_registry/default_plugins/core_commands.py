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


@click.command()
@click.option("--registry", type=click.Path(), help="Registry directory (default: FP_REGISTRY_HOME/demo-registry).")
@click.option("--json", "as_json", is_flag=True)
def demo(registry: str | None, as_json: bool) -> None:
    """Protect a digits model, then check an exact copy, a fine-tuned copy and an independent model."""
    from pathlib import Path

    from fp_registry.config import home_dir
    from fp_registry.demo import run_local_demo
    from fp_registry.render import echo_json, table

    path = Path(registry) if registry else home_dir() / "demo-registry"
    rows = run_local_demo(path, echo=(lambda *a: None) if as_json else click.echo)
    if as_json:
        echo_json(rows)
        return
    click.echo(table(rows, ["suspect", "verdict", "score", "threshold", "p_value"]))
    click.echo(f"registry: file://{path} (fingerprints are secrets: keep it private)")


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(protect)
    cli.add_command(demo)
