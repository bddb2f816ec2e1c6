"""Hub webhook deliveries (recorded payloads) -> receiver -> durable queue -> worker -> verdict_ready."""
from __future__ import annotations

import copy
import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("huggingface_hub")
from fastapi.testclient import TestClient  # noqa: E402
from fakehub import running_hub  # noqa: E402

from fp_registry import hookimpl  # noqa: E402
from fp_registry.hooks.hub_events import hub_event, idempotency_key  # noqa: E402
from fp_registry.hooks.queue import Queue  # noqa: E402
from fp_registry.hooks.receiver import create_app  # noqa: E402

SECRET = "hub-secret"
# The example delivery from the Hub's webhook docs (integrations.md §2.6), shas completed to 40 hex digits.
RECORDED = {
    "event": {"action": "update", "scope": "repo.content"},
    "repo": {"type": "model", "name": "some-user/some-repo", "id": "6366c000a2abcdf2fd69a080", "private": False,
             "url": {"web": "https://huggingface.co/some-user/some-repo",
                     "api": "https://huggingface.co/api/models/some-user/some-repo"},
             "headSha": "c379e821c9c95d613899e8c4343e4bfee2b0c600", "tags": ["license:other"],
             "owner": {"id": "61d2000c3c2083e1c08af22d"}},
    "updatedRefs": [{"ref": "refs/heads/main", "oldSha": "ce9a4674fa833a68d5a73ec355f0ea95eedd60b7",
                     "newSha": "575db8b7a51b6f85eb06eee540738584589f131c"}],
    "webhook": {"id": "6390e855e30d9209411de93b", "version": 3},
}


def variant(**changes):
    p = copy.deepcopy(RECORDED)
    for key, value in changes.items():
        p[key] = value
    return p


def test_commit_comes_from_updated_refs_not_head_sha():
    event = hub_event(RECORDED)
    assert event.version == "575db8b7a51b6f85eb06eee540738584589f131c"
    assert event.model_uri == "hf://some-user/some-repo@575db8b7a51b6f85eb06eee540738584589f131c"
    created = variant(event={"action": "create", "scope": "repo"})
    del created["updatedRefs"]
    assert hub_event(created).version == RECORDED["repo"]["headSha"]


@pytest.mark.parametrize("payload", [
    variant(event={"action": "update", "scope": "discussion"}),
    variant(event={"action": "update", "scope": "repo.config"}),
    variant(event={"action": "delete", "scope": "repo"}),
    variant(updatedRefs=[{"ref": "refs/heads/dev", "oldSha": "a" * 40, "newSha": "b" * 40}]),
    variant(updatedRefs=[{"ref": "refs/heads/main", "oldSha": "a" * 40, "newSha": None}]),
    variant(repo={**RECORDED["repo"], "type": "dataset"}),
])
def test_non_model_commits_are_ignored(payload):
    assert hub_event(payload) is None


def test_unknown_future_repo_scope_counts_as_update():
    assert hub_event(variant(event={"action": "update", "scope": "repo.content.lfs"})) is not None


@pytest.fixture
def queue(tmp_path):
    return Queue(tmp_path / "q.db", backoff_s=0.0)


@pytest.fixture
def client(queue):
    return TestClient(create_app(queue, "mlflow-secret", hf_secret=SECRET))


@pytest.mark.parametrize("headers", [{}, {"X-Webhook-Secret": "wrong"}, {"X-Webhook-Secret": SECRET + "x"}])
def test_wrong_or_missing_secret_is_403_and_nothing_queued(client, queue, headers):
    assert client.post("/webhooks/hf", json=RECORDED, headers=headers).status_code == 403
    assert queue.counts() == {}


def test_replayed_delivery_is_checked_once(client, queue):
    statuses = [client.post("/webhooks/hf", json=RECORDED, headers={"X-Webhook-Secret": SECRET}).json()["status"]
                for _ in range(3)]
    assert statuses == ["queued", "duplicate", "duplicate"]
    assert queue.counts() == {"pending": 1}
    assert queue.status(idempotency_key(hub_event(RECORDED))) == "pending"
    bad = client.post("/webhooks/hf", content=b"[not json", headers={"X-Webhook-Secret": SECRET})
    assert bad.status_code == 400


def test_hub_route_is_off_without_its_secret(queue):
    plain = TestClient(create_app(queue, "mlflow-secret"))
    assert plain.post("/webhooks/hf", json=RECORDED, headers={"X-Webhook-Secret": ""}).status_code == 404


class Recorder:
    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def verdict_ready(self, verdict, entry, event, config):
        self.seen.append((verdict, entry, event))


def test_new_commit_of_finetuned_copy_gives_match_verdict(tmp_path, client, queue, plugin, digits_owner,
                                                          digits_finetuned, digits_independent, ipguard_fp):
    from fp_registry.hooks.hub_events import hf_processor
    from fp_registry.hooks.worker import run_once
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.integrations.hf_loader import push_reference

    recorder = Recorder()
    plugin(recorder, "hf-recorder")
    with running_hub(tmp_path / "hf-cache") as hub:
        owner_sha = push_reference(digits_owner, "acme/owner")
        HfVault("hf://acme/vault").put(ipguard_fp, f"hf://acme/owner@{owner_sha}")
        old = push_reference(digits_finetuned, "pirate/digits-ft")
        new = hub.commit("pirate/digits-ft", {"README.md": b"---\nlicense: mit\n---\nmy own model"})
        push_reference(digits_independent[3], "other/indep")
        deliveries = [(variant(repo={**RECORDED["repo"], "name": "pirate/digits-ft", "headSha": new},
                               updatedRefs=[{"ref": "refs/heads/main", "oldSha": old, "newSha": new}])),
                      variant(repo={**RECORDED["repo"], "name": "other/indep"}, event={"action": "create",
                                                                                       "scope": "repo"})]
        deliveries[1]["repo"]["headSha"] = hub.repos["other/indep"].head[0]
        del deliveries[1]["updatedRefs"]
        for body in deliveries + deliveries:  # each delivered twice: the replays are dropped
            client.post("/webhooks/hf", content=json.dumps(body), headers={"X-Webhook-Secret": SECRET})
        process = hf_processor("acme/vault")
        while run_once(queue, process):
            pass
    assert queue.counts() == {"done": 2}
    results = {ev.name: (v.label, e.entry_id if e else None, ev.version) for v, e, ev in recorder.seen}
    assert results["pirate/digits-ft"] == ("match", "acme-owner-ipguard", new)
    assert results["other/indep"][0] == "clean"
    assert len(recorder.seen) == 2


def _deliver(client, hub, repo: str) -> str:
    """A push webhook for the current head of ``repo``; returns that commit."""
    sha = hub.repos[repo].head[0]
    body = variant(repo={**RECORDED["repo"], "name": repo, "headSha": sha},
                   updatedRefs=[{"ref": "refs/heads/main", "oldSha": "0" * 40, "newSha": sha}])
    assert client.post("/webhooks/hf", content=json.dumps(body), headers={"X-Webhook-Secret": SECRET}).status_code \
        == 200
    return sha


def test_repos_protected_on_push_are_fingerprinted_at_each_new_commit(tmp_path, client, queue, plugin, capsys,
                                                                      digits_owner, digits_finetuned,
                                                                      digits_independent):
    import numpy as np

    from fp_registry.cli import run
    from fp_registry.hooks.hub_events import hf_processor
    from fp_registry.hooks.worker import run_once
    from fp_registry.integrations.hf_autoprotect import protect_list
    from fp_registry.integrations.hf_backend import HfVault
    from fp_registry.integrations.hf_loader import push_reference
    from fp_registry.scenarios import owner_inputs

    recorder = Recorder()
    plugin(recorder, "hf-recorder-push")
    kw = owner_inputs("digits-mlp")  # stands in for data of the owner's own
    np.savez(tmp_path / "own.npz", X=kw["data"].numpy(), y=kw["labels"].numpy())
    with running_hub(tmp_path / "hf-cache") as hub:
        push_reference(digits_owner, "acme/owner")
        refs = [a for i, m in enumerate(digits_independent[:3]) for a in ("--negative", push_uri(m, f"acme/ref{i}"))]
        args = ["hf", "protect", "acme/owner", "--vault", "acme/vault", "--data", str(tmp_path / "own.npz"), *refs]
        assert run(args + ["--on-push"]) == 0, capsys.readouterr().err
        assert "protected on push" in capsys.readouterr().out
        assert {"protect.json", "data/acme-owner.npz"} <= set(hub.repos["acme/vault"].head[1])
        hub.commit("acme/owner", {"README.md": b"v2"})  # the owner pushes a new version
        new = _deliver(client, hub, "acme/owner")
        push_reference(digits_finetuned, "pirate/digits-ft")
        _deliver(client, hub, "pirate/digits-ft")
        vault = HfVault("hf://acme/vault")
        repos = protect_list(vault)  # the owner's entry stays: an exact name wins over a pattern
        repos["acme/*"] = {"method": "ipguard", "data": "digits"}  # owner data, but no references: cannot work
        repos["acme/gone"] = {"method": "ipguard", "data": "vault:data/gone.npz", "negatives": ["hf://acme/ref0"]}
        vault.write_file("protect.json", json.dumps({"repos": repos}).encode(), "a pattern without references")
        push_reference(digits_independent[3], "acme/other")
        _deliver(client, hub, "acme/other")
        push_reference(digits_independent[3], "acme/gone")
        _deliver(client, hub, "acme/gone")
        process = hf_processor("acme/vault")
        while run_once(queue, process):
            pass
        [entry] = vault.entries()
    assert queue.counts() == {"done": 4}  # the errors are reported once, not retried
    seen = {ev.name: v for v, _, ev in recorder.seen}
    assert seen["acme/owner"].label == "skipped"
    assert seen["acme/owner"].evidence["reason"] == "protected with ipguard on data vault:data/acme-owner.npz"
    assert entry.model_uri == f"hf://acme/owner@{new}"  # re-fingerprinted at the new commit
    assert seen["pirate/digits-ft"].label == "match"
    assert seen["acme/other"].label == "error" and "--negative MODEL" in seen["acme/other"].evidence["error"]
    assert "fpreg hf protect acme/other --on-push" in seen["acme/other"].evidence["error"]
    assert seen["acme/gone"].label == "error" and "vault:data/gone.npz" in seen["acme/gone"].evidence["error"]


def push_uri(model, repo: str) -> str:
    from fp_registry.integrations.hf_loader import push_reference

    push_reference(model, repo)
    return f"hf://{repo}"


def test_serve_refuses_to_start_without_the_hub_secret(monkeypatch):
    from click.testing import CliRunner

    from fp_registry.hooks.serve_cli import serve

    monkeypatch.delenv("FP_REGISTRY_HF_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("FP_REGISTRY_WEBHOOK_SECRET", raising=False)
    res = CliRunner().invoke(serve, ["--no-mlflow"])
    assert res.exit_code == 2 and "--hf-vault" in res.output
    res = CliRunner().invoke(serve, ["--no-mlflow", "--hf-vault", "acme/vault"])
    assert res.exit_code == 2 and "FP_REGISTRY_HF_WEBHOOK_SECRET" in res.output
