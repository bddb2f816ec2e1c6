"""An example third-party plugin: one attack for the zoo and one alert."""
from __future__ import annotations

import copy
from typing import Any

import torch

from fp_registry import hookimpl


def sign_flip_last(model: torch.nn.Module, ctx: Any, **settings: Any) -> torch.nn.Module:
    """A toy derived model: negate the final layer's bias."""
    out = copy.deepcopy(model)
    last = [m for m in out.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.neg_()
    return out


@hookimpl
def register_attacks(register: Any) -> None:
    register("sign_flip_last", sign_flip_last, family="toy")


@hookimpl
def verdict_ready(verdict: Any, entry: Any, event: Any, config: dict[str, Any]) -> None:
    if verdict.label == "match":
        print(f"ALERT: {verdict.suspect} looks derived from {entry.entry_id if entry else '?'}")
