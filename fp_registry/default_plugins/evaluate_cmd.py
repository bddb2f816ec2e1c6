"""Plugin: ``fpreg evaluate`` -- build a zoo, fingerprint with each method, report test-split metrics."""
from __future__ import annotations

from typing import Any

import click

from fp_registry import hookimpl


@click.command()
@click.option("--scenario", "-s", default=None,
              help="digits-mlp, digits-cnn, diabetes-fcn, digits-gen, text-bert or text-gpt.")
@click.option("--methods", "-m", default="ipguard", show_default=True,
              help="Comma-separated method names; a variant as name:key=value[:key=value], e.g. textprobe:confer=200.")
@click.option("--out", "-o", default="report", show_default=True, type=click.Path(),
              help="Directory for report.json, report.md and the PNG plots.")
@click.option("--model", default=None, help="Your own model (path or URI) instead of a scenario.")
@click.option("--data", "-d", default=None, help="With --model: bundled dataset name or .npz with X (and y).")
@click.option("--task", "-t", default="classification", show_default=True, help="With --model: the task.")
@click.option("--holdout", default="", help="Comma-separated attack families kept out of train/calibration.")
@click.option("--size", default=0, help="Cap derived and independent models per split (default: full zoo).")
@click.option("--train-reps", default=None, type=click.IntRange(min=1),
              help="Build the train split this many times with fresh seeds (more models for MetaV to learn from); "
              "default: what the methods ask for.")
@click.option("--calibration-reps", default=0, show_default=True, type=click.IntRange(min=0),
              help="Build this many more replicas of the train recipes (fresh seeds) and use them only to set "
              "thresholds (calibration split).")
@click.option("--whitebox", is_flag=True, help="Also report METHOD+whitebox: the black-box score fused with CKA and "
              "weight-Gram evidence (needs the weights of the suspects, as a Hub scan has them).")
@click.option("--seed", default=0, show_default=True)
@click.option("--seeds", default="", help="Comma-separated zoo seeds, e.g. 5,6,7: a new owner and zoo per seed, "
              "reports under OUT/seed-S and a summary across them (OUT/summary.md). Scenarios only.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate(scenario: str | None, methods: str, out: str, model: str | None, data: str | None, task: str,
             holdout: str, size: int, train_reps: int | None, calibration_reps: int, whitebox: bool, seed: int,
             seeds: str, as_json: bool, quiet: bool) -> None:
    """Evaluate METHODS on a scenario's (or your model's) zoo; metrics are measured on the test split only."""
    import json

    import torch

    from fp_registry.errors import UsageError
    from fp_registry.evaluation import evaluate as run_scenario
    from fp_registry.evaluation.report import summary_table

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    options: dict[str, Any] = {"holdout_families": tuple(h.strip() for h in holdout.split(",") if h.strip()),
                               "sizes": {s: size for s in ("train", "calibration", "test")} if size else None,
                               "train_reps": train_reps, "whitebox": whitebox, "calibration_reps": calibration_reps}
    if seeds:
        if seed != 0:
            raise UsageError("--seed and --seeds were both given",
                             "use --seed N for one zoo or --seeds A,B for several")
        _over_seeds(scenario, names, out, seeds, model, not quiet, as_json, options)
        return
    if model is not None:
        report = _own_model(model, data, task, names, out, seed, not quiet, options)
    elif scenario is not None:
        report = run_scenario(scenario, names, out, seed=seed, progress=not quiet, **options)
    else:
        raise UsageError("nothing to evaluate", "pass --scenario NAME, or --model PATH --data NAME_OR_NPZ --task T")
    if as_json:
        click.echo(json.dumps({k: v for k, v in report.items()}, indent=1))
    else:
        click.echo(summary_table(report))
        click.echo(f"\nreport: {out}/report.md")


def _over_seeds(scenario: str | None, names: list[str], out: str, seeds: str, model: str | None, progress: bool,
                as_json: bool, options: dict[str, Any]) -> None:
    import json

    from fp_registry.errors import UsageError
    from fp_registry.evaluation.seeds import evaluate_seeds, summary_markdown

    if scenario is None or model is not None:
        raise UsageError("--seeds needs --scenario (a seed trains a new owner and zoo)",
                         "pass --scenario NAME, or evaluate your own model with --model and one --seed")
    try:
        values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds {seeds!r} is not a list of integers", "write it as e.g. --seeds 5,6,7") from None
    summary = evaluate_seeds(scenario, names, values, out, progress=progress, **options)
    click.echo(json.dumps(summary, indent=1) if as_json else summary_markdown(summary) + f"\nsummary: {out}/summary.md")


def _own_model(model: str, data: str | None, task: str, names: list[str], out: str, seed: int, progress: bool,
               options: dict[str, Any]) -> dict[str, Any]:
    from fp_registry.data import load_data_arg
    from fp_registry.errors import UsageError
    from fp_registry.evaluation import evaluate_owner
    from fp_registry.loading import load_model

    if data is None:
        raise UsageError("--model needs --data", "pass a bundled dataset name or an .npz with X (and y)")
    x, y = load_data_arg(data)
    kwargs = {"task": task, "data": x, "labels": None if task == "generation" else y}
    if task == "generation":
        raise UsageError("evaluating your own generator needs its latent size",
                         "use the Python API: evaluate_owner(model, {'task': 'generation', 'data': X, "
                         "'input_shape': (latent_dim,)}, methods, out)")
    return evaluate_owner(load_model(model), kwargs, names, out, name="model", seed=seed, progress=progress,
                          **options)


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(evaluate)
