"""Load ``hf://ORG/REPO[@REV]``: reference nets (PyTorchModelHubMixin layout), transformers (safetensors only), .pt2."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fp_registry.errors import ModelLoadError, UnsafeFormatError

PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CONFIG_KEYS = ("fp_registry_arch",)


def endpoint() -> str | None:
    """The Hub endpoint, read at call time (huggingface_hub reads ``HF_ENDPOINT`` only at import)."""
    return os.environ.get("FP_REGISTRY_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None


def token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token(), library_name="fp-registry")


def parse_uri(uri: str) -> tuple[str, str | None]:
    """``hf://ORG/REPO@REV`` -> (``ORG/REPO``, ``REV`` or None)."""
    rest = uri[len("hf://"):] if uri.startswith("hf://") else uri
    repo, _, rev = rest.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelLoadError(f"{uri!r} is not hf://ORG/REPO[@REVISION]")
    return repo, rev or None


@dataclass(frozen=True)
class Plan:
    """What to download and how to load it; ``kind`` is reference | transformers | pt2 | pickle | none."""

    kind: str
    files: tuple[str, ...]
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def plan_files(files: list[str], config: dict[str, Any] | None, allow_pickle: bool = False) -> Plan:
    """Choose a loader from the file list and ``config.json`` alone, before any weights are downloaded."""
    names = set(files)
    cfg = config or {}
    shards = sorted(f for f in files if f.startswith("model-") and f.endswith(".safetensors"))
    if "config.json" in names and any(k in cfg for k in CONFIG_KEYS) and "model.safetensors" in names:
        return Plan("reference", ("config.json", "model.safetensors"), config=cfg)
    if "config.json" in names and "model_type" in cfg:
        if cfg.get("auto_map"):
            return Plan("none", (), "remote code (auto_map): never executed", cfg)
        if "model.safetensors" in names:
            return Plan("transformers", ("config.json", "model.safetensors"), config=cfg)
        if "model.safetensors.index.json" in names and shards:
            return Plan("transformers", ("config.json", "model.safetensors.index.json", *shards), config=cfg)
    pt2 = sorted(f for f in files if f.endswith(".pt2"))
    if pt2:
        return Plan("pt2", (pt2[0],), config=cfg)
    pickled = sorted(f for f in files if f.endswith(PICKLED))
    if pickled:
        if not allow_pickle:
            return Plan("pickle", (), f"unsafe format: only pickled weights ({', '.join(pickled[:3])})", cfg)
        extra = ("config.json",) if "config.json" in names else ()
        return Plan("pickle", (*extra, pickled[0]), config=cfg)
    return Plan("none", (), "no loadable weights (safetensors with config.json, .pt2 or opt-in pickles)", cfg)


def fetch(repo: str, revision: str, files: tuple[str, ...] | list[str]) -> Path:
    """Download only ``files`` at ``revision`` through the standard Hub cache; returns the snapshot dir."""
    from huggingface_hub import hf_hub_download

    local = None
    for name in files:
        local = hf_hub_download(repo, name, revision=revision, endpoint=endpoint(), token=token())
    if local is None:
        raise ModelLoadError(f"hf://{repo}@{revision}: nothing to download")
    snapshot = Path(local)
    for _ in Path(files[-1]).parts:
        snapshot = snapshot.parent
    return snapshot


def read_config(repo: str, revision: str, files: list[str]) -> dict[str, Any]:
    """``config.json`` (a few hundred bytes) or {} if the repo has none or it is not a JSON object."""
    if "config.json" not in files:
        return {}
    local = fetch(repo, revision, ["config.json"])  # a download failure is an error, not "no config"
    try:
        cfg = json.loads((local / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def resolve(repo: str, revision: str | None) -> tuple[str, list[str]]:
    """The commit sha and file list of ``repo`` at ``revision`` (always passed: olah needs it)."""
    info = api().model_info(repo, revision=revision or "main")
    return str(info.sha), [s.rfilename for s in (info.siblings or [])]


def load_planned(plan: Plan, local: Path) -> Any:
    """Build the model from already downloaded files."""
    from fp_registry.modelio import load_pt2, load_reference, load_transformers

    if plan.kind == "reference":
        return load_reference(local)
    if plan.kind == "transformers":
        return load_transformers(local, use_safetensors=True)
    if plan.kind == "pt2":
        return load_pt2(local / plan.files[0])
    if plan.kind == "pickle" and plan.files:
        if plan.config.get("model_type"):
            return load_transformers(local, use_safetensors=False)
        from fp_registry.modelio import load_path

        return load_path(local / plan.files[-1], allow_pickle=True)
    if plan.reason.startswith("unsafe format"):
        raise UnsafeFormatError(plan.reason)
    raise ModelLoadError(plan.reason or "nothing loadable")


def load_hf(uri: str, allow_pickle: bool = False) -> Any:
    """``hf://ORG/REPO[@REV]`` -> a torch module, downloading only the files the chosen loader needs."""
    repo, rev = parse_uri(uri)
    try:
        sha, files = resolve(repo, rev)
        plan = plan_files(files, read_config(repo, sha, files), allow_pickle)
        if not plan.files:
            return load_planned(plan, Path("."))
        return load_planned(plan, fetch(repo, sha, plan.files))
    except ModelLoadError:
        raise
    except Exception as exc:  # huggingface_hub raises many HTTP/cache error types
        raise ModelLoadError(f"cannot load {uri}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}",
                             "check the repo id, revision, HF_ENDPOINT and HF_TOKEN") from exc


def hub_class(model: Any) -> Any:
    """A PyTorchModelHubMixin subclass of the reference net's class (for save_pretrained / push_to_hub)."""
    from huggingface_hub import PyTorchModelHubMixin

    base = type(model)
    return type(f"Hub{base.__name__}", (base, PyTorchModelHubMixin), {},
                library_name="fp-registry", tags=["fp-registry"])


def save_reference(model: Any, folder: str | os.PathLike[str]) -> Path:
    """Write a reference net in the PyTorchModelHubMixin layout; config.json names the architecture."""
    hub_model = hub_class(model)(**model.config)
    hub_model.load_state_dict(model.state_dict())
    hub_model.save_pretrained(str(folder), config={"fp_registry_arch": model.arch, **model.config})
    return Path(folder)


def push_reference(model: Any, repo: str, message: str = "upload model") -> str:
    """Upload a reference net to ``repo`` (created if needed) and return the commit sha."""
    import tempfile

    hub = api()
    hub.create_repo(repo, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_reference(model, tmp)
        info = hub.upload_folder(repo_id=repo, folder_path=tmp, commit_message=message)
    return str(info.oid)
