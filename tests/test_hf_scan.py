"""End to end on the fake Hub: protect, push copies and distractors, scan (resumable, parallel), CLI exit codes."""
from __future__ import annotations

import io
import json

import pytest
import torch

pytest.importorskip("huggingface_hub")
from click.testing import CliRunner  # noqa: E402
from fakehub import running_hub  # noqa: E402

from fp_registry.integrations.hf_loader import push_reference  # noqa: E402

VAULT = "hf://acme/vault"
COPIES = {"pirate/digits-ft", "pirate/digits-pruned"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, digits_owner, digits_finetuned, digits_independent, ipguard_fp):
    """The owner's protected model, two copies, an independent model and three kinds of distractor."""
    from fp_registry import nets
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.zoo.attacks import prune

    with running_hub(tmp_path_factory.mktemp("hf-cache")) as hub:
        sha = push_reference(digits_owner, "acme/owner")
        HfVault(VAULT).put(ipguard_fp, f"hf://acme/owner@{sha}")
        push_reference(digits_finetuned, "pirate/digits-ft")
        push_reference(prune(digits_owner, None, ratio=0.3), "pirate/digits-pruned")
        push_reference(digits_independent[3], "other/digits-indep")  # not among the calibration negatives
        torch.manual_seed(0)
        push_reference(nets.build("mlp", {"in_features": 10, "hidden": [8], "out_features": 1}), "other/regressor")
        buf = io.BytesIO()
        torch.save({"w": torch.zeros(1)}, buf)
        hub.commit("other/pickled", {"pytorch_model.bin": buf.getvalue()})
        push_reference(digits_independent[2], "other/broken")
        hub.fail.add("other/broken")
        yield hub


def weight_downloads(hub, repo):
    return [line for line in hub.log if line.startswith("GET") and f"/{repo}/resolve/" in line
            and line.endswith("model.safetensors")]


def by_repo(report):
    return {r["repo"]: r for r in report.results}


def test_scan_flags_exactly_the_two_copies(world, tmp_path):
    from fp_registry.integrations.hf_scan import scan

    report = scan(VAULT, limit=50, state=tmp_path / "state.jsonl", workers=2)
    rows = by_repo(report)
    assert {r for r, row in rows.items() if row["status"] == "match"} == COPIES
    assert rows["other/digits-indep"]["status"] == "clean"
    assert rows["acme/owner"]["status"] == "skipped"  # the protected model itself
    assert "unsafe format" in rows["other/pickled"]["reason"]
    assert rows["other/broken"]["status"] == "error"  # and the scan went on
    assert rows["other/regressor"]["status"] == "skipped"
    assert weight_downloads(world, "other/regressor") == []  # dropped from config.json alone
    assert report.exit_code() == 1
    s = report.summary()
    assert s["match"] == 2 and s["error"] == 1 and set(s["time_share"]) == {"download", "load", "verify"}
    recorded = [p for p in world.repos["acme/vault"].head[1] if p.startswith("verdicts/")]
    assert len(recorded) == 2 and all("pirate" in p for p in recorded)


def test_rescan_skips_unchanged_commits_and_rechecks_new_ones(world, tmp_path, ipguard_fp):
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.integrations.hf_scan import scan

    vault = "hf://acme/vault3"
    HfVault(vault).put(ipguard_fp, "hf://acme/owner@" + world.repos["acme/owner"].commits[0][0])
    state = tmp_path / "state.jsonl"
    first = scan(vault, author="pirate", state=state, record=False)
    assert first.summary()["resumed"] == 0
    before = len(weight_downloads(world, "pirate/digits-pruned"))
    second = scan(vault, author="pirate", state=state, record=False)
    assert second.summary()["resumed"] == 2 and {r["status"] for r in second.results} == {"match"}
    assert len(weight_downloads(world, "pirate/digits-pruned")) == before
    world.commit("pirate/digits-pruned", {"notes.md": b"new commit"})
    third = by_repo(scan(vault, author="pirate", state=state, record=False))
    assert third["pirate/digits-pruned"].get("resumed") is None and third["pirate/digits-ft"]["resumed"]
    HfVault(vault).put(ipguard_fp, "hf://acme/other-owner@" + "0" * 40)  # a newly protected model
    fourth = scan(vault, author="pirate", state=state, record=False)
    assert fourth.summary()["resumed"] == 0  # every repo is checked against the new entry too


def test_interrupted_scan_picks_up_where_it_stopped(world, tmp_path):
    from fp_registry.integrations.hf_scan import scan

    state = tmp_path / "state.jsonl"
    seen = []

    def stop_after_two(row):
        seen.append(row["repo"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(VAULT, search="digits", state=state, workers=1, record=False, on_result=stop_after_two)
    finished = len(state.read_text().splitlines())
    assert finished >= 1
    again = scan(VAULT, search="digits", state=state, workers=1, record=False)
    assert again.summary()["resumed"] == finished
    assert {r["repo"] for r in again.results if r["status"] == "match"} == COPIES


def test_cli_scan_and_check_exit_codes(world, tmp_path):
    from fp_registry.cli import _load_plugin_commands, cli

    _load_plugin_commands()
    runner = CliRunner()
    out = tmp_path / "report.json"
    res = runner.invoke(cli, ["scan", "hf", "--vault", "acme/vault", "--author", "pirate", "--state",
                              str(tmp_path / "s.jsonl"), "--no-record", "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "pirate/digits-ft" in res.output and "match" in res.output
    assert json.loads(out.read_text())["summary"]["match"] == 2
    res = runner.invoke(cli, ["scan", "hf", "--vault", "acme/vault", "--search", "indep", "--json", "--state",
                              str(tmp_path / "s2.jsonl")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["summary"]["clean"] == 1
    res = runner.invoke(cli, ["scan", "hf", "--vault", "acme/vault", "--search", "indep", "--cluster", "--state",
                              str(tmp_path / "s4.jsonl")])
    assert res.exit_code == 0 and "no DeepCore entry in the vault" in res.output  # an IPGuard vault: said, not hidden
    res = runner.invoke(cli, ["scan", "hf", "--vault", "acme/vault", "--search", "broken", "--state",
                              str(tmp_path / "s3.jsonl")])
    assert res.exit_code == 2, res.output
    assert runner.invoke(cli, ["hf", "check", "pirate/digits-ft", "--vault", "acme/vault"]).exit_code == 1
    assert runner.invoke(cli, ["hf", "check", "other/digits-indep", "--vault", "acme/vault"]).exit_code == 0
    generic = runner.invoke(cli, ["check", "hf://pirate/digits-pruned", "--against", "hf://acme/vault"])
    assert generic.exit_code == 1, generic.output  # the same through the generic backend + loader hooks


def test_scan_clusters_the_repos_of_a_deepcore_entry(world, tmp_path, digits_owner, digits_independent, digits):
    """Issue 7: DeepCore's clustering where batches make sense. Workers keep each repo's distance to the owner, the
    batch is clustered after the scan, resumed repos take part, and repos checked without --cluster are counted."""
    import fp_registry as fpr
    from fp_registry import nets
    from fp_registry.cli import _load_plugin_commands, cli
    from fp_registry.errors import ShapeMismatchError
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.integrations.hf_scan import scan
    from fp_registry.modelio import save_model
    from fp_registry.suspect import Suspect

    fp = fpr.fingerprint(digits_owner, method="deepcore", n_points=40, n_candidates=200, references=2,
                         reference_epochs=4, negatives=digits_independent[:2], progress=False, **digits)
    vault = "hf://acme/vault-deepcore"
    HfVault(vault).put(fp, "hf://acme/owner@" + world.repos["acme/owner"].commits[0][0])
    state, refs = tmp_path / "state.jsonl", [Suspect(m, f"ref{i}") for i, m in enumerate(digits_independent[:2])]
    plain = scan(vault, search="digits", state=state, record=False)  # no --cluster: no distances kept
    assert plain.clusters is None and "clusters" not in plain.to_dict()
    report = scan(vault, search="digits", state=tmp_path / "fresh.jsonl", record=False, cluster=True,
                  references=refs)
    (c,) = report.clusters.values()
    assert c["in_owner_cluster"] == {"pirate/digits-ft": True, "pirate/digits-pruned": True,
                                     "other/digits-indep": False}
    assert c["references_in_owner_cluster"] == 0 and c["without_distance"] == 0
    assert report.summary()["in_owner_cluster"] == 2 and report.exit_code() == 1
    resumed = scan(vault, search="digits", state=tmp_path / "fresh.jsonl", record=False, cluster=True,
                   references=refs)
    assert resumed.summary()["resumed"] == 3 and resumed.clusters == report.clusters  # from the stored distances
    mixed = scan(vault, search="digits", state=state, record=False, cluster=True, references=refs)
    assert next(iter(mixed.clusters.values()))["without_distance"] == 3  # checked before --cluster: left out
    torch.manual_seed(0)
    foreign = Suspect(nets.build("mlp", {"in_features": 10, "hidden": [8], "out_features": 1}), "regressor")
    with pytest.raises(ShapeMismatchError):  # a reference that fits no entry fails before any repo is checked
        scan(vault, search="digits", state=tmp_path / "never.jsonl", cluster=True, references=[foreign])
    assert not (tmp_path / "never.jsonl").exists()
    save_model(digits_independent[0], tmp_path / "ref0")
    _load_plugin_commands()
    res = CliRunner().invoke(cli, ["scan", "hf", "--vault", "acme/vault-deepcore", "--search", "digits", "--cluster",
                                   "--reference", str(tmp_path / "ref0"), "--state", str(tmp_path / "cli.jsonl"),
                                   "--no-record", "--json"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.output)["summary"]["in_owner_cluster"] == 2


def test_protect_repo_with_card_claim_then_check(world, digits_independent):
    from fp_registry.integrations.hf_cli import check_repo, protect_repo

    entry = protect_repo("acme/owner", "acme/vault2", method="ipguard", negatives=digits_independent[:3], claim=True)
    assert entry.model_uri.startswith("hf://acme/owner@") and world.repos["acme/vault2"].private
    assert entry.digest in world.repos["acme/owner"].head[1]["README.md"].decode()
    assert [v.label for v in check_repo("pirate/digits-pruned", "acme/vault2")] == ["match"]
    assert [v.label for v in check_repo("other/digits-indep", "acme/vault2")] == ["clean"]
    assert check_repo("acme/owner", "acme/vault2") == []  # its own entry is left out


def test_cli_protects_on_the_owners_own_data_and_hub_references(world, digits_independent, tmp_path, capsys):
    import numpy as np

    from fp_registry.cli import run
    from fp_registry.integrations.hf_cli import check_repo
    from fp_registry.scenarios import owner_inputs

    kw = owner_inputs("digits-mlp")  # stands in for data of the owner's own, saved as an .npz
    np.savez(tmp_path / "own.npz", X=kw["data"].numpy(), y=kw["labels"].numpy())
    refs = []
    for i, model in enumerate(digits_independent[:3]):
        push_reference(model, f"acme/ref{i}")
        refs += ["--negative", f"hf://acme/ref{i}"]
    args = ["hf", "protect", "acme/owner", "--vault", "acme/vault-own-data", "--data", str(tmp_path / "own.npz")]
    assert run(args) == 4 and "--negative MODEL" in capsys.readouterr().err  # no references: refused
    assert run(args + refs) == 0, capsys.readouterr().err
    assert f"on data {tmp_path / 'own.npz'}" in capsys.readouterr().out
    assert [v.label for v in check_repo("pirate/digits-ft", "acme/vault-own-data")] == ["match"]
    assert [v.label for v in check_repo("other/digits-indep", "acme/vault-own-data")] == ["clean"]


def test_prefilter_rules():
    from fp_registry.integrations.hf_scan import fits, io_spec

    spec = {"input_shape": [64], "output_dim": 10, "input_kind": "float32"}
    assert fits(spec, io_spec({"fp_registry_arch": "mlp", "in_features": 64, "out_features": 10}))
    assert fits(spec, io_spec({"fp_registry_arch": "cnn", "config": {"side": 8, "n_classes": 10}}))
    assert not fits(spec, io_spec({"fp_registry_arch": "mlp", "in_features": 10, "out_features": 1}))
    assert not fits(spec, io_spec({"model_type": "bert", "vocab_size": 30522, "num_labels": 10}))
    assert fits(spec, io_spec({}))  # unknown: kept, decided after download


def test_ray_executor(world, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'fp-registry[ray]')")
    import ray

    from fp_registry.integrations.hf_scan import scan

    try:
        report = scan(VAULT, author="pirate", state=tmp_path / "r.jsonl", executor="ray", record=False)
    finally:
        ray.shutdown()
    assert {r["repo"] for r in report.results if r["status"] == "match"} == COPIES
    assert report.summary()["stage_seconds"]["verify"] > 0  # the checks ran in the Ray workers
