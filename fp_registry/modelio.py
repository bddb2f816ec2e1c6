"""Safe model persistence: safetensors + config for reference nets, torch.export programs, no pickles."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import types
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import nets
from .errors import ModelLoadError, UnsafeFormatError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")


def atomic_dir(target: Path) -> "_AtomicDir":
    """Context manager: write into a temp sibling, then swap it into place (no half-written dirs)."""
    return _AtomicDir(Path(target))


class _AtomicDir:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def save_model(model: nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Save a reference architecture as ``model.safetensors`` + ``config.json`` (atomically)."""
    from safetensors.torch import save_file

    if not isinstance(model, nets.RefNet):
        raise ModelLoadError(f"cannot save {type(model).__name__} as a reference model",
                             "save it with torch.export.save(...) as a .pt2 program instead")
    target = Path(path)
    with atomic_dir(target) as tmp:
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps({"fp_registry_arch": model.arch, "config": model.config,
                                                     "meta": meta or {}}, indent=1))
    return target


def load_reference(path: Path) -> nn.Module:
    """Load a directory written by :func:`save_model`, or by ``PyTorchModelHubMixin`` (kwargs at the top level)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        cfg = json.loads((path / "config.json").read_text())
        kwargs = cfg["config"] if isinstance(cfg.get("config"), dict) else {
            k: v for k, v in cfg.items() if k != "fp_registry_arch"}
        model = nets.build(cfg["fp_registry_arch"], kwargs)
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(f"{path} is not a valid fp-registry model directory: {exc.__class__.__name__}: "
                             f"{str(exc)[:200]}") from exc
    return model.eval()


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def load_transformers(local: Path, use_safetensors: bool) -> Any:
    """A transformers model from its config (the class it names, else AutoModel); never ``trust_remote_code``."""
    try:
        import transformers
    except ImportError as exc:
        from .errors import MissingExtraError

        raise MissingExtraError("transformers", "hf") from exc
    try:  # a model type transformers does not ship (it would need remote code) fails here, as a ValueError
        config = transformers.AutoConfig.from_pretrained(str(local), trust_remote_code=False)
        arch = (getattr(config, "architectures", None) or [""])[0]
        cls = getattr(transformers, arch, None) if arch else None
        if cls is None or not hasattr(cls, "from_pretrained"):
            cls = transformers.AutoModel
        model = cls.from_pretrained(str(local), use_safetensors=use_safetensors, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"transformers could not load {local.name}: {str(exc).splitlines()[0][:160]}") from exc
    return model.eval()


def load_path(path: str | os.PathLike[str], allow_pickle: bool = False) -> nn.Module:
    """Load a model file or directory by its format; pickles only with ``allow_pickle`` and weights_only."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p} does not exist", "check the path or URI")
    if p.is_dir():
        if (p / "config.json").exists() and (p / "model.safetensors").exists():
            cfg = _read_config(p)
            if "fp_registry_arch" not in cfg and "model_type" in cfg:
                return load_transformers(p, use_safetensors=True)  # e.g. a save_pretrained directory
            return load_reference(p)
        pt2 = sorted(p.rglob("*.pt2"))
        if pt2:
            return load_pt2(pt2[0])
        raise ModelLoadError(f"{p} holds no model.safetensors+config.json and no .pt2 program")
    if p.suffix == ".pt2":
        return load_pt2(p)
    if p.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UnsafeFormatError(f"{p.name} is a pickle-based file")
        return _load_pickle_weights_only(p)
    raise ModelLoadError(f"unknown model format {p.suffix!r} for {p.name}")


#: held around torch.export tracing, program loading and graph interpretation in this process. Why: they share
#: process-wide tracing state, and a worker thread loading a program while another thread exports one (the demo,
#: the tests: register while the in-process worker checks) corrupted it ("Trying to pop empty mode stack").
EXPORT_LOCK = threading.RLock()


def load_pt2(path: Path) -> nn.Module:
    """Load a ``torch.export`` program and return a callable module."""
    with EXPORT_LOCK:
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # torch raises many types for a corrupt archive
            raise ModelLoadError(f"{path.name} is not a valid torch.export program: {exc.__class__.__name__}") from exc
        batch = static_batch_size(program)
        module = _mode_free(program.module())
        module = module if batch is None else FixedBatch(module, batch)
    example = _first_input(program)
    dtype = getattr(example, "dtype", None)
    if dtype is not None and not dtype.is_floating_point:
        module.input_kind = "int64"  # token ids: a program has no config or embedding to tell it by
    rest = tuple(getattr(example, "shape", ())[1:])
    if rest and all(isinstance(d, int) for d in rest):  # static sizes only: a dynamic length has no one value
        module.example_input_shape = rest  # what probes need when no data is given (fpreg whitebox)
    return module


def _mode_free(module: nn.Module) -> nn.Module:
    """Make ``train()`` / ``eval()`` no-ops on a program's module, which torch makes raise.

    Why: a program is frozen in the mode it was exported in, so switching is meaningless, but callers that put any
    module in eval mode (copies of the owner, queries) must not fail on one. Instance attributes, like torch's
    own, so the state dict (and the owner digest) stays that of the program.
    """
    module.train = types.MethodType(lambda self, mode=True: self, module)  # type: ignore[method-assign]
    module.eval = types.MethodType(lambda self: self, module)  # type: ignore[method-assign]
    return module


def program_graph(model: Any) -> torch.fx.GraphModule | None:
    """The fx graph of a loaded ``torch.export`` program (possibly inside :class:`FixedBatch`), else None: a
    program's layers are graph calls, not modules."""
    inner = getattr(model, "inner", model)
    return inner if isinstance(inner, torch.fx.GraphModule) else None


def _first_input(program: Any) -> Any:
    """The example value (shape, dtype) the program's first user input was exported with, or None."""
    names = list(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and names and node.name == names[0]:
            return node.meta.get("val")
    return None


def static_batch_size(program: Any) -> int | None:
    """The batch size a program was exported with if its first input's batch dimension is fixed, else None."""
    shape = getattr(_first_input(program), "shape", None)
    if shape is not None and len(shape) and isinstance(shape[0], int):
        return int(shape[0])
    return None


class FixedBatch(nn.Module):
    """Run a fixed-batch program on any number of rows: chunks of its size, the last one padded by repetition."""

    def __init__(self, inner: nn.Module, batch: int) -> None:
        super().__init__()
        self.inner, self.batch = inner, batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for start in range(0, len(x), self.batch):
            part = x[start:start + self.batch]
            pad = self.batch - len(part)
            if pad:  # repeat the last row: padding rows never reach the caller
                part = torch.cat([part, part[-1:].expand(pad, *part.shape[1:])])
            out = self.inner(part)
            outs.append(out[:len(out) - pad] if pad else out)
        return torch.cat(outs)

    def train(self, mode: bool = True) -> "FixedBatch":
        return self  # export programs are frozen in eval mode


def _load_pickle_weights_only(path: Path) -> nn.Module:
    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path.name} could not be loaded with weights_only=True: {str(exc)[:160]}",
                             "only plain tensors and state dicts can be loaded safely") from exc
    if isinstance(obj, nn.Module):
        return obj.eval()
    raise ModelLoadError(f"{path.name} holds a {type(obj).__name__}, not a model",
                         "a state dict needs its architecture: save a reference model directory or a .pt2")


def state_digest(model: Any) -> str:
    """SHA-256 over the model's tensors (names and bytes); identifies the owner without revealing it."""
    h = hashlib.sha256()
    if isinstance(model, nn.Module):
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        h.update(repr(model).encode())
    return h.hexdigest()


def cached_model(key: str, make: Callable[[], nn.Module]) -> nn.Module:
    """Return the model cached under ``key`` or build, save and return it."""
    from .config import cache_dir

    path = cache_dir() / "models" / key.replace("/", "__")
    if path.exists():
        try:
            return load_reference(path)
        except ModelLoadError:
            shutil.rmtree(path, ignore_errors=True)  # a corrupt cache entry is rebuilt, never trusted
    model = make()
    if isinstance(model, nets.RefNet):
        save_model(model, path, meta={"lineage": key})
    return model
