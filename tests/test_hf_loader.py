"""hf:// loaders and the private vault backend, against the in-repo fake Hub (no network)."""
from __future__ import annotations

import io
import json

import pytest
import torch

pytest.importorskip("huggingface_hub")
from fakehub import hub  # noqa: E402,F401  (fixture)

from fp_registry import nets  # noqa: E402
from fp_registry.errors import ModelLoadError, UnsafeFormatError  # noqa: E402
from fp_registry.loading import load_model  # noqa: E402
from fp_registry.integrations.hf_loader import plan_files, push_reference  # noqa: E402

X = torch.linspace(-1, 1, 4 * 64).reshape(4, 64)


def downloads(hub, repo):
    return sorted({line.split("/resolve/")[1].split("/", 1)[1] for line in hub.log
                   if line.startswith("GET") and f"/{repo}/resolve/" in line})


def test_reference_net_round_trip_downloads_only_needed_files(hub, digits_owner):
    sha1 = push_reference(digits_owner, "acme/owner")
    hub.commit("acme/owner", {"notes.txt": b"x" * 1000, "optimizer.pt": b"pickle bytes"})
    model = load_model("hf://acme/owner")
    assert torch.equal(model(X), digits_owner.eval()(X))
    assert downloads(hub, "acme/owner") == ["config.json", "model.safetensors"]
    torch.manual_seed(99)
    changed = push_reference(nets.build(digits_owner.arch, digits_owner.config), "acme/owner")
    assert changed != sha1
    pinned = load_model(f"hf://acme/owner@{sha1}")
    assert torch.equal(pinned(X), digits_owner(X))
    assert not torch.equal(load_model("hf://acme/owner")(X), digits_owner(X))


def test_pickled_only_repo_is_skipped_as_unsafe(hub):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    hub.commit("acme/pickled", {"pytorch_model.bin": buf.getvalue(), "config.json": b"{}"})
    with pytest.raises(UnsafeFormatError, match="unsafe format"):
        load_model("hf://acme/pickled")
    assert downloads(hub, "acme/pickled") == ["config.json"]  # the pickle was never fetched
    with pytest.raises(ModelLoadError, match="weights_only|not a model"):  # opt-in: weights_only, a dict is no model
        load_model("hf://acme/pickled", allow_pickle=True)


def test_remote_code_is_never_used():
    cfg = {"model_type": "custom", "auto_map": {"AutoModel": "modeling.Custom"}}
    plan = plan_files(["config.json", "model.safetensors", "modeling.py"], cfg)
    assert plan.kind == "none" and "remote code" in plan.reason


def test_pt2_program(hub, digits_owner):
    program = torch.export.export(digits_owner.eval(), (X[:2],),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    hub.commit("acme/exported", {"model.pt2": buf.getvalue(), "README.md": b"# exported"})
    assert torch.allclose(load_model("hf://acme/exported")(X), digits_owner(X), atol=1e-5)


def test_transformers_model_from_config_and_safetensors(hub, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    model.save_pretrained(tmp_path / "bert", safe_serialization=True)
    files = {p.name: p.read_bytes() for p in (tmp_path / "bert").iterdir()}
    hub.commit("acme/tiny-bert", files)
    loaded = load_model("hf://acme/tiny-bert")
    assert type(loaded).__name__ == "BertForSequenceClassification"
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)


def test_missing_repo_is_a_load_error(hub):
    with pytest.raises(ModelLoadError, match="acme/nothing"):
        load_model("hf://acme/nothing")


def test_vault_keeps_entries_private_and_claim_is_digest_only(hub, digits_owner, ipguard_fp):
    from fp_registry.backends import get_backend
    from fp_registry.integrations.hf_backend import HfVault, claim_in_card
    from huggingface_hub import HfApi

    sha = push_reference(digits_owner, "acme/owner")
    vault = get_backend("hf://acme/vault")
    assert isinstance(vault, HfVault)
    entry = vault.put(ipguard_fp, f"hf://acme/owner@{sha}")
    assert [e.entry_id for e in vault.entries()] == [entry.entry_id]
    fp = vault.load(vault.entries()[0])
    assert fp.digest == entry.digest and fp.method == "ipguard"
    assert hub.repos["acme/vault"].private
    api = HfApi(endpoint=hub.url)
    assert "acme/vault" not in [m.id for m in api.list_models(author="acme")]
    claim_in_card("acme/owner", entry)
    public = hub.repos["acme/owner"].head[1]
    assert not any(p.startswith("entries/") or "fingerprint" in p for p in public)
    card = public["README.md"].decode()
    assert entry.digest in card and "fp-registry-v1" in card
    assert json.dumps(ipguard_fp.manifest()["info"])[:40] not in card
    assert HfVault("hf://acme/vault", exclude="acme/owner").entries() == []
    stale = f"entries/{entry.entry_id}/fingerprint/stale.safetensors"
    hub.commit("acme/vault", {stale: b"left over"})
    vault.put(ipguard_fp, f"hf://acme/owner@{sha}")  # protecting again replaces the entry folder whole
    assert stale not in hub.repos["acme/vault"].head[1] and len(vault.entries()) == 1
