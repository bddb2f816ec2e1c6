"""Every plugin hook fp-registry calls, typed, with its contract on one line."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from .records import RegistryEntry, UploadEvent, Verdict

hookspec = pluggy.HookspecMarker("fp_registry")
hookimpl = pluggy.HookimplMarker("fp_registry")


@hookspec
def register_methods(register: Callable[..., None]) -> None:
    """Call ``register(MethodClass, aliases=())`` for each fingerprint or watermark method."""


@hookspec
def register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Call ``register(scheme, builder)``; ``builder(uri)`` returns a Backend for URIs of that scheme."""


@hookspec(firstresult=True)
def load_model(uri: str, config: dict[str, Any]) -> Any | None:
    """Return the model (a torch Module or a callable) at ``uri``, or None if the URI is not yours.

    First non-None result wins. ``config`` carries options such as ``allow_pickle``.
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add click commands or groups to the ``fpreg`` CLI."""


@hookspec
def register_attacks(register: Callable[..., None]) -> None:
    """Call ``register(name, fn, family=..., derived=True)`` for each model transformation in the zoo.

    ``fn(model, ctx, **settings)`` returns a new model; ``ctx`` gives the task, data and a seeded generator.
    """


@hookspec(firstresult=True)
def should_check(event: "UploadEvent", config: dict[str, Any]) -> bool | None:
    """Return False to skip checking an upload, True to check it; first non-None result wins."""


@hookspec
def verdict_ready(verdict: "Verdict", entry: "RegistryEntry | None", event: "UploadEvent | None",
                  config: dict[str, Any]) -> None:
    """Side effects for a finished check: tags, reports, alerts. Return values are ignored."""
