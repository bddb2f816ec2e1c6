"""Built-in loaders: local files (.pt2, safetensors model dirs, opt-in pickles) and embedded scenarios."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from fp_registry import hookimpl


@hookimpl(trylast=True)
def load_model(uri: str, config: dict[str, Any]) -> Any | None:
    """Files and directories on disk (``file://`` or a plain path)."""
    from fp_registry.modelio import load_path

    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path or path.startswith("models:/"):
        return None
    if not Path(path).exists() and not Path(path).suffix:
        return None
    return load_path(path, allow_pickle=bool(config.get("allow_pickle")))


@hookimpl
def register_backends(register: Any) -> None:
    from fp_registry.backends import LocalBackend

    register("file", LocalBackend)


def load_scenario_uri(uri: str) -> Any | None:
    """``scenario://digits-mlp?seed=1``: the embedded scenario's owner model, trained and cached."""
    if not uri.startswith("scenario://"):
        return None
    from fp_registry.scenarios import train_owner

    parsed = urlparse(uri)
    seed = int(parse_qs(parsed.query).get("seed", ["0"])[0])
    return train_owner(parsed.netloc, seed=seed)


@hookimpl(tryfirst=True, specname="load_model")
def load_scenario(uri: str, config: dict[str, Any]) -> Any | None:
    return load_scenario_uri(uri)
