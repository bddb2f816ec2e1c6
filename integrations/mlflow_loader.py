"""Load suspects from the MLflow registry (pt2 programs safely; pickled flavors only on opt-in) or over HTTP."""
from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from fp_registry.errors import ModelLoadError, UnsafeFormatError


def load_registered(uri: str, config: dict[str, Any]) -> Any:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` -> a torch module (pt2) or a pyfunc black box."""
    import mlflow.artifacts

    tracking = config.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory(prefix="fpreg-model-") as dst:  # the model is in memory once loaded
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst, tracking_uri=tracking))
        except Exception as exc:
            raise ModelLoadError(f"cannot download {uri} from MLflow ({tracking or 'default tracking URI'}): "
                                 f"{str(exc).splitlines()[0][:160]}", "set MLFLOW_TRACKING_URI") from exc
        return _load_local(uri, local, config)


def _load_local(uri: str, local: Path, config: dict[str, Any]) -> Any:
    import yaml

    meta = yaml.safe_load((local / "MLmodel").read_text()) if (local / "MLmodel").exists() else {}
    flavors = meta.get("flavors", {})
    pt2 = sorted(local.glob(f"{flavors.get('pytorch', {}).get('model_data', 'data')}/*.pt2"))
    if pt2:
        from fp_registry.modelio import load_pt2

        return load_pt2(pt2[0])  # torch.export program: no pickle involved
    if not config.get("allow_pickle"):
        raise UnsafeFormatError(f"{uri} uses flavor(s) {sorted(flavors)} that unpickle code on load",
                                "pass allow_pickle only for models you trust")
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(local))
    return lambda x: np.asarray(model.predict(np.asarray(x, dtype=np.float32)))


class InvocationsModel:
    """A model behind ``mlflow models serve``: posts ``{"inputs": ...}``, returns the predictions (black box)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout

    def __call__(self, x: Any) -> np.ndarray:
        body = json.dumps({"inputs": np.asarray(x, dtype=np.float32).tolist()}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                out = json.loads(resp.read())
        except OSError as exc:
            raise ModelLoadError(f"{self.url} did not answer: {exc}") from exc
        preds = out.get("predictions", out) if isinstance(out, dict) else out
        return np.asarray(preds, dtype=np.float32)
