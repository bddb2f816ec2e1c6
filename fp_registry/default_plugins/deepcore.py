"""Plugin: registers DeepCore and the ``fpreg audit`` batch command (implementations imported lazily)."""
from __future__ import annotations

from typing import Any

import click

from fp_registry import hookimpl


@click.command()
@click.argument("fingerprint_path", metavar="FINGERPRINT")
@click.argument("suspects", nargs=-1, required=True)
@click.option("--cluster", is_flag=True, help="Also sort the batch into the owner's cluster or not (k-means, k=2).")
@click.option("--reference", "references", multiple=True, metavar="MODEL",
              help="Known homologous (independent) model to anchor the non-owner cluster; repeatable.")
@click.option("--allow-pickle", is_flag=True, help="Load pickled suspects (with torch weights_only=True).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, fingerprint_path: str, suspects: tuple[str, ...], cluster: bool,
          references: tuple[str, ...], allow_pickle: bool, as_json: bool) -> None:
    """Verify many SUSPECTS against one FINGERPRINT; with --cluster, cluster the batch (exit 1 on any match)."""
    from fp_registry.exitcodes import ExitCode
    from fp_registry.fingerprints import load_fingerprint
    from fp_registry.render import VERDICT_COLUMNS, echo_json, table, verdict_rows

    fp = load_fingerprint(fingerprint_path)
    verdicts = [fp.verify(s, allow_pickle=allow_pickle) for s in suspects]
    result = _cluster(fp, suspects, references, allow_pickle) if cluster else None
    if as_json:
        echo_json({"verdicts": [v.to_dict() for v in verdicts], "cluster": result})
    else:
        click.echo(table(verdict_rows(verdicts), VERDICT_COLUMNS))
        if result is not None:
            click.echo(_cluster_text(result))
    flagged = any(v.is_match for v in verdicts) or bool(result and any(result["in_owner_cluster"].values()))
    ctx.exit(ExitCode.MATCH if flagged else ExitCode.OK)


def _cluster(fp: Any, suspects: tuple[str, ...], references: tuple[str, ...], allow_pickle: bool) -> dict[str, Any]:
    from fp_registry.algorithms.clustering import cluster_suspects
    from fp_registry.suspect import Suspect

    subs = [Suspect(s, allow_pickle=allow_pickle) for s in suspects]
    refs = [Suspect(r, allow_pickle=allow_pickle) for r in references]
    return cluster_suspects(fp, subs, refs).to_dict()


def _cluster_text(result: dict[str, Any]) -> str:
    lines = [f"clustering ({result['n_references']} reference model(s)):"]
    lines += [f"  {name}: {'OWNER CLUSTER (piracy)' if inside else 'other cluster'}"
              for name, inside in result["in_owner_cluster"].items()]
    if result["note"]:
        lines.append(f"  note: {result['note']}")
    return "\n".join(lines)


@hookimpl
def register_methods(register: Any) -> None:
    # Imported here, not at module level, so `fpreg --help` never pays for torch.
    from fp_registry.algorithms.deepcore import DeepCore

    register(DeepCore)


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(audit)
