"""The plugin manager: built-in plugins, entry-point discovery and the registries the hooks fill."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import sys
import warnings
from typing import Any, Callable

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "fp_registry"

pm = pluggy.PluginManager("fp_registry")
pm.add_hookspecs(hookspecs)

_loaded = False
#: plugin name -> distribution name (or "fp-registry (built-in)"); our own map, not pluggy's private one
plugin_distributions: dict[str, str] = {}


def default_plugin_modules() -> list[str]:
    """Every module in ``fp_registry.default_plugins``: built-ins use the public hooks like anyone else."""
    from . import default_plugins

    return sorted(f"fp_registry.default_plugins.{m.name}" for m in pkgutil.iter_modules(default_plugins.__path__))


def _wanted() -> set[str] | None:
    raw = os.environ.get("FP_REGISTRY_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugins() -> None:
    """Load built-in and entry-point plugins once; env vars are read at call time."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod_name in default_plugin_modules():
        if not pm.is_registered(sys.modules.get(mod_name)):
            pm.register(importlib.import_module(mod_name), name=mod_name.rsplit(".", 1)[-1])
            plugin_distributions[mod_name.rsplit(".", 1)[-1]] = "fp-registry (built-in)"
    if os.environ.get("FP_REGISTRY_DISABLE_PLUGIN_AUTOLOAD"):
        _finish()
        return
    wanted = _wanted()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        register_entry_point(ep)
    if wanted:
        missing = wanted - set(plugin_distributions)
        if missing:
            print(f"fp-registry: plugins not found: {', '.join(sorted(missing))}", file=sys.stderr)
    _finish()


def register_entry_point(ep: importlib.metadata.EntryPoint) -> bool:
    """Import and register one entry point; a broken plugin is a warning, never a crash."""
    if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
        return False
    try:
        module = ep.load()
        pm.register(module, name=ep.name)
    except Exception as exc:  # any import-time failure of a third-party plugin
        warnings.warn(f"fp-registry plugin {ep.name!r} failed to load: {exc.__class__.__name__}: {exc}",
                      stacklevel=2)
        return False
    dist = getattr(ep, "dist", None)
    plugin_distributions[ep.name] = f"{dist.name} {dist.version}" if dist is not None else "unknown"
    return True


def _finish() -> None:
    pm.check_pending()
    if os.environ.get("FP_REGISTRY_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(
            lambda name, impls, kw: print(f"fp-registry hook {name} -> {[i.plugin_name for i in impls]}",
                                          file=sys.stderr),
            lambda outcome, name, impls, kw: None)


def reset_for_tests() -> None:
    """Forget that plugins were loaded, so a test can load them again under other settings."""
    global _loaded
    for name, _plugin in list(pm.list_name_plugin()):
        pm.unregister(name=name)
    plugin_distributions.clear()
    _loaded = False
    _registry_cache.clear()


def plugin_table() -> list[dict[str, Any]]:
    """Name, distribution and implemented hooks of each registered plugin (for ``fpreg plugins``)."""
    load_plugins()
    rows = []
    for name, plugin in pm.list_name_plugin():
        callers = pm.get_hookcallers(plugin) or []
        rows.append({"name": name, "distribution": plugin_distributions.get(name, "in-process"),
                     "hooks": sorted(c.name for c in callers)})
    return sorted(rows, key=lambda r: r["name"])


_registry_cache: dict[str, dict[str, Any]] = {}


def _collect(hook_name: str, normalise: Callable[..., tuple[str, Any]]) -> dict[str, Any]:
    """Run a ``register_*`` hook and gather what plugins register; later duplicates get a suffix."""
    load_plugins()
    if hook_name in _registry_cache:
        return _registry_cache[hook_name]
    found: dict[str, Any] = {}

    def register(*args: Any, **kwargs: Any) -> None:
        name, value = normalise(*args, **kwargs)
        key, n = name, 1
        while key in found:
            n += 1
            key = f"{name}_{n}"
        found[key] = value

    getattr(pm.hook, hook_name)(register=register)
    _registry_cache[hook_name] = found
    return found


def invalidate() -> None:
    """Drop cached registries after plugins were (un)registered at run time."""
    _registry_cache.clear()


def methods() -> dict[str, Any]:
    """Method name (and aliases) -> method class."""
    def norm(cls: Any, aliases: tuple[str, ...] = ()) -> tuple[str, Any]:
        return cls.name, (cls, tuple(aliases))
    raw = _collect("register_methods", norm)
    out: dict[str, Any] = {}
    for name, (cls, aliases) in raw.items():
        out[name] = cls
        for alias in aliases:
            out.setdefault(alias, cls)
    return out


def backends() -> dict[str, Callable[..., Any]]:
    """URI scheme -> backend builder."""
    return _collect("register_backends", lambda scheme, builder: (scheme, builder))


def attacks() -> dict[str, Any]:
    """Attack name -> AttackSpec (see fp_registry.zoo.attacks)."""
    from .zoo.spec import AttackSpec

    def norm(name: str, fn: Callable[..., Any], family: str | None = None, derived: bool = True,
             **meta: Any) -> tuple[str, Any]:
        return name, AttackSpec(name=name, fn=fn, family=family or name, derived=derived, meta=meta)
    return _collect("register_attacks", norm)
