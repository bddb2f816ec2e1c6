"""Packaging: every package folder is listed, and the mapped names import after installation."""
from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mapped(folder: Path) -> str:
    rel = folder.relative_to(ROOT).parts
    if rel[0] in ("hooks", "integrations"):
        return ".".join(("fp_registry",) + rel)
    return ".".join(rel)


def test_every_package_folder_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    for root in ("fp_registry", "hooks", "integrations"):
        for init in (ROOT / root).rglob("__init__.py"):
            assert _mapped(init.parent) in listed, f"{init.parent} is not in [tool.setuptools] packages"


def test_mapped_packages_import() -> None:
    for name in ("fp_registry.hooks", "fp_registry.integrations"):
        importlib.import_module(name)
    assert not (ROOT / "fp_registry" / "hooks").exists() and not (ROOT / "fp_registry" / "integrations").exists()
