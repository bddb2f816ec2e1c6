"""``fpreg mlflow protect|check|sync``: the MLflow registry from the command line."""
from __future__ import annotations

import os

import click

from .protect_inputs import owner_data_options

DEFAULT_URI = "mlflow+" + os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")


def _split(ref: str) -> tuple[str, str]:
    if "/" not in ref:
        raise click.BadParameter(f"{ref!r}: expected NAME/VERSION")
    name, version = ref.rsplit("/", 1)
    return name, version


@click.group("mlflow")
def mlflow_group() -> None:
    """Protect and check model versions in an MLflow Model Registry."""


@mlflow_group.command("protect")
@click.argument("ref", metavar="NAME/VERSION")
@click.option("--method", "-m", default="ipguard", show_default=True, help="ipguard or metav (any registered method)")
@click.option("--scenario", default="digits-mlp", show_default=True,
              help="embedded owner data and reference models (without --data)")
@owner_data_options
@click.option("--registry", "-r", default=DEFAULT_URI, show_default=True, help="mlflow+http://HOST:PORT")
def protect_cmd(ref: str, method: str, scenario: str, data: str | None, negatives: tuple[str, ...], task: str,
                registry: str) -> None:
    """Fingerprint a registered version and store the fingerprint beside it (artifacts + tags)."""
    from .mlflow_backend import MlflowBackend
    from .mlflow_ops import protect_version
    from .protect_inputs import ProtectInputs

    name, version = _split(ref)
    inputs = ProtectInputs(scenario=scenario, data=data, negatives=negatives, task=task)
    entry = protect_version(MlflowBackend(registry), name, version, method=method, inputs=inputs)
    click.echo(f"protected {entry.entry_id} with {entry.method} on {inputs.describe()} (digest {entry.digest[:12]})")


@mlflow_group.command("check")
@click.argument("ref", metavar="NAME/VERSION")
@click.option("--registry", "-r", default=DEFAULT_URI, show_default=True)
def check_cmd(ref: str, registry: str) -> None:
    """Check a version against every protected version and tag the verdict on it."""
    from fp_registry.pipeline import worst_exit_code

    from .mlflow_backend import MlflowBackend
    from .mlflow_ops import check_version

    name, version = _split(ref)
    verdicts = check_version(MlflowBackend(registry), name, version)
    for v in verdicts:
        click.echo(f"{ref}  vs {v.entry_id or '-'}: {v.label}  score={v.score:.3f}  method={v.method}")
    raise SystemExit(int(worst_exit_code(verdicts)) if any(v.label == "match" for v in verdicts) else 0)


@mlflow_group.command("sync")
@click.option("--registry", "-r", default=DEFAULT_URI, show_default=True)
def sync_cmd(registry: str) -> None:
    """Reconcile: check every version that has no verdict yet (webhook delivery is at most once)."""
    from .mlflow_backend import MlflowBackend
    from .mlflow_ops import process_version, unchecked_versions

    backend = MlflowBackend(registry)
    todo = unchecked_versions(backend)
    click.echo(f"{len(todo)} version(s) without a verdict")
    for name, version in todo:
        labels = sorted({v.label for v in process_version(MlflowBackend(registry), name, version)})
        click.echo(f"{name}/{version}: {', '.join(labels)}")


@mlflow_group.command("worker")
@click.option("--registry", "-r", default=DEFAULT_URI, show_default=True)
@click.option("--queue", "queue_path", default="fp_registry_queue.db", show_default=True,
              help="the sqlite queue shared with the receiver or the mlflow.app plugin")
@click.option("--reconcile-every", default=300.0, show_default=True, help="seconds between reconciliation sweeps")
def worker_cmd(registry: str, queue_path: str, reconcile_every: float) -> None:
    """Run only the worker: drain the queue (jobs a killed worker held are taken up again) until interrupted."""
    import signal
    import threading

    from fp_registry.hooks.queue import Queue
    from fp_registry.hooks.worker import mlflow_processor, reconcile_mlflow, run_forever

    queue, stop = Queue(queue_path), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"worker on {queue_path} for {registry}; Ctrl-C stops it", err=True)
    try:
        run_forever(queue, mlflow_processor(registry), stop, reconcile=lambda: reconcile_mlflow(queue, registry),
                    reconcile_every_s=reconcile_every)
    except KeyboardInterrupt:
        stop.set()
