"""The ``fpreg`` command line: thin commands over the pipeline; plugins add more via ``register_commands``."""
from __future__ import annotations

import os
import sys
from typing import Any

import click

from .exitcodes import ExitCode
from .render import VERDICT_COLUMNS, echo_json, table, verdict_columns, verdict_rows

TASK_CHOICE = click.Choice(["classification", "regression", "generation"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fp-registry", prog_name="fpreg")
def cli() -> None:
    """Fingerprint models and find their copies in MLflow and on the Hugging Face Hub.

    Exit codes: 0 no match, 1 match, 2 error, 3 nothing checked, 4 usage.
    """


WHITEBOX_HELP = ("Also store a white-box reference (CKA / weight-Gram nulls and the fused threshold), so checks of "
                 "suspects with weights report fused evidence beside the verdict.")


def _settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        key, raw = pair.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


NEGATIVE_HELP = ("An independent reference model (repeatable): calibrates on these instead of building a zoo; "
                 "needed for .pt2 programs, which cannot be retrained.")


def _references(uris: tuple[str, ...]) -> dict[str, Any]:
    """``negatives=`` for :func:`fingerprint` from ``--negative`` URIs (nothing when none are given)."""
    from .loading import load_model

    return {"negatives": [(uri, load_model(uri)) for uri in uris]} if uris else {}


@cli.command(name="fingerprint")
@click.argument("model")
@click.option("--method", "-m", default="metav", show_default=True, help="See 'fpreg methods'.")
@click.option("--task", "-t", type=TASK_CHOICE, default="classification", show_default=True)
@click.option("--data", "-d", help="Bundled dataset name (digits, diabetes, ...) or an .npz with X and y.")
@click.option("--input-shape", help="Latent shape for generators, e.g. 16 or 1,8,8.")
@click.option("--out", "-o", default="fingerprint", show_default=True, type=click.Path(), help="Output directory.")
@click.option("--seed", default=0, show_default=True)
@click.option("--set", "sets", multiple=True, help="Method setting KEY=VALUE (repeatable).")
@click.option("--train-reps", default=None, type=click.IntRange(min=1),
              help="Build the zoo's train split this many times (fresh seeds); default: the method's choice.")
@click.option("--whitebox", is_flag=True, help=WHITEBOX_HELP)
@click.option("--negative", "negatives", multiple=True, metavar="MODEL", help=NEGATIVE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fingerprint_cmd(model: str, method: str, task: str, data: str | None, input_shape: str | None, out: str,
                    seed: int, sets: tuple[str, ...], train_reps: int | None, whitebox: bool,
                    negatives: tuple[str, ...], as_json: bool) -> None:
    """Fingerprint MODEL (a path, scenario://NAME or registry URI) and save the artifact to --out."""
    from .data import load_data_arg
    from .fingerprints import fingerprint

    x, y = load_data_arg(data) if data else (None, None)
    shape = tuple(int(s) for s in input_shape.split(",")) if input_shape else None
    fp = fingerprint(model, method=method, task=task, data=x, labels=y, seed=seed, input_shape=shape,
                     progress=not as_json, train_reps=train_reps, whitebox=whitebox, **_references(negatives),
                     **_settings(sets))
    fp.save(out)
    info = {"path": out, "method": fp.method, "task": fp.task, "digest": fp.digest, "threshold": fp.threshold}
    echo_json(info) if as_json else click.echo(f"fingerprint ({fp.method}, {fp.task}) written to {out}; "
                                                f"digest {fp.digest[:16]}, threshold {fp.threshold:.4g}")


@cli.command()
@click.argument("fingerprint_path", metavar="FINGERPRINT")
@click.argument("suspect")
@click.option("--allow-pickle", is_flag=True, help="Load pickled suspects (with torch weights_only=True).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, fingerprint_path: str, suspect: str, allow_pickle: bool, as_json: bool) -> None:
    """Check SUSPECT against one FINGERPRINT artifact (exit 1 on a match)."""
    from .fingerprints import load_fingerprint

    v = load_fingerprint(fingerprint_path).verify(suspect, allow_pickle=allow_pickle)
    echo_json(v.to_dict()) if as_json else click.echo(table(verdict_rows([v]), VERDICT_COLUMNS))
    ctx.exit(ExitCode.MATCH if v.is_match else ExitCode.OK)


@cli.command()
@click.argument("model")
@click.option("--to", "to", required=True, help="Backend URI, e.g. file://./registry or an MLflow tracking URI.")
@click.option("--method", "-m", default="metav", show_default=True)
@click.option("--task", "-t", type=TASK_CHOICE, default="classification", show_default=True)
@click.option("--data", "-d", help="Bundled dataset name or .npz.")
@click.option("--seed", default=0, show_default=True)
@click.option("--set", "sets", multiple=True, help="Method setting KEY=VALUE (repeatable).")
@click.option("--whitebox", is_flag=True, help=WHITEBOX_HELP)
@click.option("--negative", "negatives", multiple=True, metavar="MODEL", help=NEGATIVE_HELP)
@click.option("--json", "as_json", is_flag=True)
def register(model: str, to: str, method: str, task: str, data: str | None, seed: int, sets: tuple[str, ...],
             whitebox: bool, negatives: tuple[str, ...], as_json: bool) -> None:
    """Fingerprint MODEL and store the fingerprint in the registry at --to."""
    from .data import load_data_arg
    from .pipeline import register_model

    x, y = load_data_arg(data) if data else (None, None)
    entry = register_model(model, to, method=method, task=task, data=x, labels=y, seed=seed, progress=not as_json,
                           whitebox=whitebox, **_references(negatives), **_settings(sets))
    echo_json(entry.to_dict()) if as_json else click.echo(f"protected {model} as {entry.entry_id} in {to}")


@cli.command()
@click.argument("suspects", nargs=-1, required=True)
@click.option("--against", required=True, help="Backend URI holding the protected entries.")
@click.option("--allow-pickle", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx: click.Context, suspects: tuple[str, ...], against: str, allow_pickle: bool, as_json: bool) -> None:
    """Check SUSPECTS against every protected entry at --against."""
    from .pipeline import check_suspect, worst_exit_code

    verdicts = [v for s in suspects for v in check_suspect(s, against, allow_pickle=allow_pickle)]
    if not verdicts:  # say why on stderr: an empty table alone reads like a clean result (a typo in --against)
        click.echo(f"nothing checked: no protected entry at {against} applies (register one with 'fpreg register "
                   f"MODEL --to {against}')", err=True)
    echo_json([v.to_dict() for v in verdicts]) if as_json else click.echo(table(verdict_rows(verdicts),
                                                                               verdict_columns(verdicts)))
    ctx.exit(worst_exit_code(verdicts))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def methods(as_json: bool) -> None:
    """List fingerprint and watermark methods."""
    from .plugins import methods as method_table

    rows = [{"name": n, "tasks": list(c.tasks), "zoo": c.zoo_use, "access": c.access, "summary": c.summary}
            for n, c in sorted(method_table().items())]
    echo_json(rows) if as_json else click.echo(table(rows, ["name", "tasks", "zoo", "access", "summary"]))


@cli.command()
@click.option("--hook", help="Only plugins implementing this hook.")
@click.option("--json", "as_json", is_flag=True)
def plugins(hook: str | None, as_json: bool) -> None:
    """List loaded plugins and the hooks they implement."""
    from .plugins import plugin_table

    rows = [r for r in plugin_table() if hook is None or hook in r["hooks"]]
    echo_json(rows) if as_json else click.echo(table(rows, ["name", "distribution", "hooks"]))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def backends(as_json: bool) -> None:
    """List registry backends by URI scheme."""
    from .plugins import backends as backend_table

    rows = [{"scheme": s, "builder": f"{b.__module__}.{b.__qualname__}"} for s, b in backend_table().items()]
    echo_json(rows) if as_json else click.echo(table(rows, ["scheme", "builder"]))


def _load_plugin_commands() -> None:
    from .plugins import load_plugins, pm

    load_plugins()
    pm.hook.register_commands(cli=cli)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map every failure to a documented exit code."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    from .errors import FpRegistryError, UsageError

    try:
        _load_plugin_commands()
        result = cli.main(args=argv, prog_name="fpreg", standalone_mode=False)
        return int(result) if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return ExitCode.ERROR
    except FpRegistryError as exc:
        if os.environ.get("FP_REGISTRY_DEBUG"):
            raise
        click.echo(f"Error: {exc.one_line()}", err=True)
        return ExitCode.USAGE if isinstance(exc, UsageError) else ExitCode.ERROR
    except Exception as exc:  # a bug here or in a plugin: never exit 1, which scripts read as "match"
        if os.environ.get("FP_REGISTRY_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0][:200]
        click.echo(f"Error: unexpected {type(exc).__name__}: {first} (a bug in fp-registry or a plugin: rerun with "
                   "FP_REGISTRY_DEBUG=1 for the traceback and report it)", err=True)
        return ExitCode.ERROR
