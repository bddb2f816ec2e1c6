"""``load_model``: resolve a URI or path to a model through the ``load_model`` plugin hook."""
from __future__ import annotations

from typing import Any

from .errors import ModelLoadError


def load_model(uri: Any, allow_pickle: bool = False, **config: Any) -> Any:
    """Return the model at ``uri``; in-memory models pass through unchanged.

    Raises:
        ModelLoadError: no plugin could load it (or it is pickled and ``allow_pickle`` is False).
    """
    if not isinstance(uri, str):
        if callable(uri):
            return uri
        raise ModelLoadError(f"cannot use a {type(uri).__name__} as a model")
    from .plugins import load_plugins, pm

    load_plugins()
    model = pm.hook.load_model(uri=uri, config={"allow_pickle": allow_pickle, **config})
    if model is None:
        raise ModelLoadError(f"no loader accepted {uri!r}",
                             "pass a file path (.pt2, model dir), scenario://NAME, models:/NAME/VERSION or hf://ORG/REPO")
    return model
