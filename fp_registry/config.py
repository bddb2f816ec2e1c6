"""Settings: defaults < fp_registry.toml < FP_REGISTRY_* environment variables < CLI flags."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def home_dir() -> Path:
    """Where caches and local state live: ``FP_REGISTRY_HOME`` or the platform's app dir."""
    env = os.environ.get("FP_REGISTRY_HOME")
    if env:
        return Path(env)
    import click

    return Path(click.get_app_dir("fp_registry"))


def cache_dir() -> Path:
    """Trained owner models and zoo members, reused across runs."""
    return Path(os.environ.get("FP_REGISTRY_CACHE") or home_dir() / "cache")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, in one frozen object (never mutated in place)."""

    target_fpr: float = 0.01
    batch_size: int = 1024
    debug: bool = False
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The ``[plugins.<name>]`` section, with ``{"$env": "NAME"}`` values resolved from the environment."""
        raw = self.plugins.get(name, {})
        return {k: os.environ.get(v["$env"], "") if isinstance(v, dict) and "$env" in v else v
                for k, v in raw.items()}


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the TOML file (``path`` or ./fp_registry.toml), the environment and overrides."""
    data: dict[str, Any] = {}
    toml_path = Path(path) if path else Path("fp_registry.toml")
    if toml_path.exists():
        data = tomllib.loads(toml_path.read_text())
    settings = Settings(target_fpr=float(data.get("target_fpr", 0.01)), batch_size=int(data.get("batch_size", 256)),
                        plugins=dict(data.get("plugins", {})))
    env: dict[str, Any] = {}
    if os.environ.get("FP_REGISTRY_TARGET_FPR"):
        env["target_fpr"] = float(os.environ["FP_REGISTRY_TARGET_FPR"])
    if os.environ.get("FP_REGISTRY_DEBUG"):
        env["debug"] = _is_true(os.environ["FP_REGISTRY_DEBUG"])
    return replace(settings, **env, **{k: v for k, v in overrides.items() if v is not None})
