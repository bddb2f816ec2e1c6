"""``fpreg hf protect|check`` and ``fpreg scan hf``: the Hugging Face Hub from the command line."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .protect_inputs import ProtectInputs, owner_data_kwargs, owner_data_options, reference_models

VAULT_HELP = "private vault repo ORG/VAULT holding the protected entries ($FP_REGISTRY_HF_VAULT)"


def _vault_default() -> str | None:
    return os.environ.get("FP_REGISTRY_HF_VAULT")


def vault_uri(vault: str) -> str:
    return vault if vault.startswith("hf://") else f"hf://{vault}"


def protect_repo(repo: str, vault: str, method: str = "ipguard", scenario: str = "digits-mlp",
                 negatives: list[Any] | None = None, claim: bool = False, inputs: ProtectInputs | None = None,
                 **settings: Any) -> Any:
    """Download ``hf://REPO``, fingerprint it on ``inputs`` (default: ``scenario``'s owner data and references)
    and store the entry in the vault. ``negatives`` (in-memory models) replace the references of ``inputs``."""
    from fp_registry.fingerprints import fingerprint

    from .hf_backend import HfVault, claim_in_card
    from .hf_loader import load_hf, parse_uri, resolve

    inputs = inputs or ProtectInputs(scenario=scenario)
    # the owner data and references first: a wrong option fails before the model is downloaded
    kwargs = owner_data_kwargs(inputs)
    negatives = reference_models(inputs, method, 3) if negatives is None else negatives
    name, rev = parse_uri(repo)
    sha, _ = resolve(name, rev)
    model = load_hf(f"hf://{name}@{sha}")
    # whitebox: nulls of the CKA / weight-Gram statistics, so scans that download a suspect's weights add them
    fp = fingerprint(model, method=method, negatives=negatives, progress=False, whitebox=True, **kwargs,
                     **settings)
    entry = HfVault(vault_uri(vault)).put(fp, f"hf://{name}@{sha}")
    if claim:
        claim_in_card(name, entry)
    return entry


def check_repo(repo: str, vault: str, allow_pickle: bool = False) -> list[Any]:
    """Check one ``ORG/REPO[@REV]`` against every entry of the vault (its own entry excluded)."""
    from fp_registry.pipeline import check_suspect

    from .hf_backend import HfVault
    from .hf_loader import parse_uri, resolve

    name, rev = parse_uri(repo)
    sha, _ = resolve(name, rev)
    return check_suspect(f"hf://{name}@{sha}", HfVault(vault_uri(vault), exclude=name), allow_pickle=allow_pickle)


@click.group("hf")
def hf_group() -> None:
    """Protect and check models on the Hugging Face Hub (entries live in a private vault repo)."""


@hf_group.command("protect")
@click.argument("repo", metavar="ORG/REPO[@REV]")
@click.option("--vault", required=True, default=_vault_default, help=VAULT_HELP)
@click.option("--method", "-m", default="ipguard", show_default=True, help="any registered method")
@click.option("--scenario", default="digits-mlp", show_default=True,
              help="embedded owner data and reference models (without --data)")
@owner_data_options
@click.option("--claim/--no-claim", default=False, show_default=True,
              help="add a digest-only fingerprint claim to the public model card")
@click.option("--on-push", is_flag=True, help="also protect every later commit of the repo (fpreg serve --hf-vault): "
                                              "lists it in the vault's protect.json, with --data copied to the vault")
def protect_cmd(repo: str, vault: str, method: str, scenario: str, data: str | None, negatives: tuple[str, ...],
                task: str, claim: bool, on_push: bool) -> None:
    """Download a model, fingerprint it and upload the entry to the private vault."""
    inputs = ProtectInputs(scenario=scenario, data=data, negatives=negatives, task=task)
    entry = protect_repo(repo, vault, method=method, claim=claim, inputs=inputs)
    click.echo(f"protected {entry.model_uri} as {entry.entry_id} with {entry.method} on {inputs.describe()} "
               f"(digest {entry.digest[:12]})")
    if on_push:
        from pathlib import Path

        from .hf_autoprotect import remember
        from .hf_backend import HfVault
        from .hf_loader import parse_uri

        name = parse_uri(repo)[0]
        local = Path(data) if data and data.endswith(".npz") else None  # bundled dataset names are kept as names
        remember(HfVault(vault_uri(vault)), name, {"method": method, "scenario": None if data else scenario,
                                                   "data": None if local else data, "negatives": list(negatives),
                                                   "task": task}, data_file=local)
        click.echo(f"{name} is protected on push: fpreg serve --hf-vault {vault} re-fingerprints each new commit")


@hf_group.command("check")
@click.argument("repo", metavar="ORG/REPO[@REV]")
@click.option("--vault", required=True, default=_vault_default, help=VAULT_HELP)
@click.option("--allow-pickle", is_flag=True, help="load pickled-only repos (weights_only); trusted repos only")
@click.option("--json", "as_json", is_flag=True, help="print the verdicts as JSON")
def check_cmd(repo: str, vault: str, allow_pickle: bool, as_json: bool) -> None:
    """Check one repo against every protected entry; exit 0 no match, 1 match, 2 error."""
    verdicts = check_repo(repo, vault, allow_pickle)
    if not verdicts and not as_json:
        click.echo(f"{repo}: no other protected model to compare with", err=True)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in verdicts], indent=1))
    else:
        for v in verdicts:
            reason = v.evidence.get("reason") or v.evidence.get("error") or ""
            click.echo(f"{repo}  vs {v.entry_id or '-'}: {v.label}  score={v.score:.3f}  {reason}".rstrip())
    labels = {v.label for v in verdicts}
    sys.exit(1 if "match" in labels else 2 if "error" in labels else 0)


@click.group("scan")
def scan_group() -> None:
    """Scan a model hub for copies of protected models."""


@scan_group.command("hf")
@click.option("--vault", required=True, default=_vault_default, help=VAULT_HELP)
@click.option("--search", help="substring of the repo id")
@click.option("--author", help="user or organisation")
@click.option("--filter", "filters", multiple=True, help="tag, e.g. pytorch or license:mit (repeatable)")
@click.option("--limit", type=int, default=100, show_default=True, help="at most this many repos")
@click.option("--state", type=click.Path(dir_okay=False), default="fpreg_hf_scan_state.jsonl", show_default=True,
              help="resume file: repos already checked at the same commit are skipped")
@click.option("--workers", type=int, default=2, show_default=True, help="repos checked at the same time")
@click.option("--executor", type=click.Choice(["thread", "ray"]), default="thread", show_default=True)
@click.option("--allow-pickle", is_flag=True, help="also load pickled-only repos (weights_only); off by default")
@click.option("--record/--no-record", default=True, show_default=True, help="write matches to the vault")
@click.option("--whitebox/--no-whitebox", default=True, show_default=True,
              help="add CKA / weight-Gram evidence (p-values) when an entry carries a white-box reference")
@click.option("--cluster", is_flag=True,
              help="also sort the repos checked against each DeepCore entry into its owner's cluster or not")
@click.option("--reference", "references", multiple=True, metavar="MODEL",
              help="known independent model anchoring the non-owner cluster (with --cluster); repeatable")
@click.option("--out", type=click.Path(dir_okay=False), help="write the JSON report here")
@click.option("--json", "as_json", is_flag=True, help="print the JSON report instead of the table")
def scan_hf_cmd(vault: str, search: str | None, author: str | None, filters: tuple[str, ...], limit: int,
                state: str, workers: int, executor: str, allow_pickle: bool, record: bool, whitebox: bool,
                cluster: bool, references: tuple[str, ...], out: str | None, as_json: bool) -> None:
    """List Hub models, drop those no entry can fit, check the rest. Exit 0 nothing found, 1 match (or a repo in a
    DeepCore owner's cluster), 2 errors."""
    from fp_registry.render import table
    from fp_registry.suspect import Suspect

    from .hf_scan import COLUMNS, scan, table_rows
    from .scan_clusters import cluster_lines

    def progress(row: dict[str, Any]) -> None:
        if not as_json:
            click.echo(f"  {row['status']:<7} {row['repo']}", err=True)

    report = scan(vault_uri(vault), search=search, author=author, filters=filters, limit=limit, state=state,
                  workers=workers, executor=executor, allow_pickle=allow_pickle, record=record, whitebox=whitebox,
                  on_result=progress, cluster=cluster, references=[Suspect(r, allow_pickle=allow_pickle)
                                                                   for r in references])
    data = report.to_dict()
    if out:
        from pathlib import Path

        from fp_registry.backends import write_json_atomic

        write_json_atomic(Path(out), data)
    if as_json:
        click.echo(json.dumps(data, indent=1, sort_keys=True))
    else:
        click.echo(table(table_rows(report), COLUMNS))
        s = data["summary"]
        click.echo(f"{s['repos']} repos: {s['match']} match, {s['clean']} clean, {s['skipped']} skipped, "
                   f"{s['error']} error ({s['resumed']} resumed) in {s['seconds']:.1f}s")
        for line in cluster_lines(data.get("clusters") or {}):
            click.echo(line)
        if cluster and not data.get("clusters"):
            click.echo("clustering: no DeepCore entry in the vault, nothing to cluster (only DeepCore fingerprints "
                       "have core points)")
    sys.exit(report.exit_code())
