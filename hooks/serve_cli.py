"""``fpreg serve``: the webhook receiver and the worker in one process."""
from __future__ import annotations

import os

import click


@click.command("serve")
@click.option("--registry", "-r", default=lambda: "mlflow+" + os.environ.get("MLFLOW_TRACKING_URI",
              "http://127.0.0.1:5000"), help="mlflow+http://HOST:PORT of the tracking server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True)
@click.option("--queue", "queue_path", default="fp_registry_queue.db", show_default=True)
@click.option("--reconcile-every", default=300.0, show_default=True, help="seconds between reconciliation sweeps")
@click.option("--hf-vault", default=lambda: os.environ.get("FP_REGISTRY_HF_VAULT", ""),
              help="ORG/VAULT: also accept Hub webhooks at /webhooks/hf (secret: $FP_REGISTRY_HF_WEBHOOK_SECRET)")
@click.option("--mlflow/--no-mlflow", "use_mlflow", default=True, show_default=True,
              help="--no-mlflow (with --hf-vault): Hub webhooks only, no MLflow route secret, no reconciliation")
def serve(registry: str, host: str, port: int, queue_path: str, reconcile_every: float, hf_vault: str,
          use_mlflow: bool) -> None:
    """Receive MLflow webhooks at http://HOST:PORT/webhooks/mlflow (secret: $FP_REGISTRY_WEBHOOK_SECRET)."""
    import threading

    import uvicorn

    from .queue import Queue
    from .receiver import create_app
    from .worker import mlflow_processor, reconcile_mlflow, run_forever

    secret = os.environ.get("FP_REGISTRY_WEBHOOK_SECRET", "")
    if not use_mlflow and not hf_vault:
        raise click.UsageError("--no-mlflow needs --hf-vault: there would be nothing to receive")
    if not use_mlflow:
        import secrets  # the MLflow route stays mounted but no sender can know this secret

        secret = secret or secrets.token_hex(32)
    if not secret:
        raise click.UsageError("set FP_REGISTRY_WEBHOOK_SECRET to the secret given to MLflow's create_webhook")
    hf_secret = os.environ.get("FP_REGISTRY_HF_WEBHOOK_SECRET", "")
    if hf_vault and not hf_secret:
        raise click.UsageError("set FP_REGISTRY_HF_WEBHOOK_SECRET to the secret given to HfApi.create_webhook")
    queue = Queue(queue_path)
    stop = threading.Event()
    process = mlflow_processor(registry)
    if hf_vault:
        from .hub_events import dispatch, hf_processor

        process = dispatch({"hf": hf_processor(hf_vault)}, default=process)
    worker = threading.Thread(target=run_forever, daemon=True,
                              args=(queue, process, stop),
                              kwargs={"reconcile": (lambda: reconcile_mlflow(queue, registry)) if use_mlflow else None,
                                      "reconcile_every_s": reconcile_every})
    worker.start()
    try:
        uvicorn.run(create_app(queue, secret, hf_secret=hf_secret if hf_vault else ""), host=host, port=port,
                    log_level="warning")
    finally:
        stop.set()
