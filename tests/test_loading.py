"""Model loading: safe formats only unless the caller opts in, and clear errors for foreign files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fp_registry.errors import ModelLoadError, UnsafeFormatError
from fp_registry.loading import load_model
from fp_registry.modelio import save_model
from fp_registry.nets import MLP
from fp_registry.suspect import Suspect


def test_reference_model_round_trip(tmp_path: Path) -> None:
    m = MLP(in_features=4, hidden=[8], out_features=3)
    save_model(m, tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    x = torch.randn(5, 4)
    assert torch.allclose(m(x), loaded(x)) and type(loaded) is MLP


def test_pt2_program(tmp_path: Path) -> None:
    m = MLP(in_features=4, hidden=[8], out_features=3).eval()
    prog = torch.export.export(m, (torch.randn(2, 4),),
                               dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))  # MLP.forward keeps batch dynamic
    torch.export.save(prog, str(tmp_path / "m.pt2"))
    loaded = load_model(str(tmp_path / "m.pt2"))
    x = torch.randn(7, 4)
    assert torch.allclose(m(x), loaded(x), atol=1e-6)


def test_pickle_refused_without_opt_in(tmp_path: Path) -> None:
    m = MLP(in_features=4, hidden=[8], out_features=3)
    torch.save(m, tmp_path / "full.pt")
    with pytest.raises(UnsafeFormatError, match="pickle-based") as err:
        load_model(str(tmp_path / "full.pt"))
    assert "allow_pickle=True" in err.value.one_line()
    # even with the opt-in only weights_only loading is used, so a full pickled module is refused
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_model(str(tmp_path / "full.pt"), allow_pickle=True)


def test_malicious_pickle_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError):
        load_model(str(tmp_path / "evil.pt"), allow_pickle=True)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 10])
def test_corrupt_reference_dir(tmp_path: Path, content: bytes) -> None:
    save_model(MLP(in_features=4, hidden=[8], out_features=3), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(content)
    with pytest.raises(ModelLoadError, match="not a valid fp-registry model directory"):
        load_model(str(tmp_path / "m"))


def test_unknown_things(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model format"):
        load_model(str(tmp_path / "model.onnx"))
    with pytest.raises(ModelLoadError, match="no loader"):
        load_model("gopher://nowhere/model")


def test_scenario_uri() -> None:
    m = load_model("scenario://digits-mlp?seed=0")
    assert m(torch.zeros(2, 64)).shape == (2, 10)


@pytest.mark.parametrize("batch", [1, 3])
def test_pt2_program_with_fixed_batch_is_queried_in_padded_chunks(tmp_path: Path, batch: int) -> None:
    m = MLP(in_features=4, hidden=[8], out_features=3).eval()
    prog = torch.export.export(m, (torch.randn(batch, 4),))  # no dynamic_shapes: the batch size is baked in
    torch.export.save(prog, str(tmp_path / "m.pt2"))
    loaded = load_model(str(tmp_path / "m.pt2"))
    x = torch.randn(7, 4)  # 7 is not a multiple of 3: the last chunk is padded
    assert torch.allclose(m(x), Suspect(loaded).raw(x), atol=1e-6)


def test_transformers_directory_loads_without_remote_code(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    model.save_pretrained(tmp_path / "bert", safe_serialization=True)  # a save_pretrained directory, as on the Hub
    loaded = load_model(str(tmp_path / "bert"))
    assert type(loaded).__name__ == "BertForSequenceClassification"
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert torch.allclose(Suspect(loaded).raw(ids), model(input_ids=ids).logits, atol=1e-6)
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text('{"model_type": "not-in-transformers", "auto_map": {"AutoModel": "m.X"}}')
    (custom / "model.safetensors").write_bytes((tmp_path / "bert" / "model.safetensors").read_bytes())
    (custom / "m.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError, match="transformers could not load"):
        load_model(str(custom))
