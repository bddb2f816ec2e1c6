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
