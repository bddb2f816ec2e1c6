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
@click.option("--local", is_flag=True, help="Use a file:// registry instead of a local MLflow server.")
@click.option("--method", "-m", default="ipguard", show_default=True, help="Method that protects the owner.")
@click.option("--dir", "root", type=click.Path(), help="State directory (default: FP_REGISTRY_HOME/demo-mlflow).")
@click.option("--keep-server", is_flag=True, help="Leave the MLflow server running to browse its UI.")
@click.option("--json", "as_json", is_flag=True)
def demo(local: bool, method: str, root: str | None, keep_server: bool, as_json: bool) -> None:
    """The main flow: MLflow server, protected owner, five suspects registered, verdict tags read back."""
    from pathlib import Path

    from fp_registry.config import home_dir
    from fp_registry.render import echo_json, table

    quiet = (lambda *a: None) if as_json else (lambda msg: click.echo(msg, err=True))
    if local:
        from fp_registry.demo import run_local_demo

        path = Path(root) if root else home_dir() / "demo-registry"
        rows = run_local_demo(path, method=method, echo=quiet)
        cols, where = ["suspect", "verdict", "score", "threshold", "p_value"], f"registry: file://{path}"
    else:
        from fp_registry.integrations.mlflow_demo import run_demo

        path = Path(root) if root else home_dir() / "demo-mlflow"
        rows, url, pid = run_demo(path, method=method, keep_server=keep_server, echo=quiet)
        cols = ["model", "lineage", "truth", "verdict", "score", "p_value", "matched", "correct"]
        where = (f"MLflow UI: {url} (server left running; stop it with: kill {pid})" if keep_server else
                 f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{path / 'mlflow.db'} "
                 f"--default-artifact-root {path / 'artifacts'}")
    if as_json:
        echo_json(rows)
        return
    click.echo(table(rows, cols))
    click.echo(where)


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(protect)
    cli.add_command(demo)
