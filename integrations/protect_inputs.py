"""What the protect flows fingerprint on: an embedded scenario's data and references, or the owner's own."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from fp_registry.errors import BackendError, UsageError

#: artifact URI schemes that are downloaded through MLflow before the ``.npz`` is read
MLFLOW_ARTIFACT_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class ProtectInputs:
    """The owner's data and independent reference models for one protection.

    ``data`` unset: the embedded ``scenario`` gives both (its owner data, references trained on it). ``data`` set:
    a bundled dataset name, a local ``.npz`` (``X``, optional ``y``) or an MLflow artifact URI of one, and the
    references are ``negatives`` (model URIs), because nothing here knows how to train look-alikes of the owner's
    own task.
    """

    scenario: str = "digits-mlp"
    data: str | None = None
    negatives: tuple[str, ...] = ()
    task: str = "classification"
    #: whether ``data`` and ``negatives`` may be files of this machine; False for MLflow tags and the vault's
    #: protect.json, which are read by a worker on behalf of whoever wrote them
    local_files: bool = True

    @classmethod
    def from_tags(cls, tags: dict[str, str], prefix: str, default_scenario: str) -> "ProtectInputs":
        """From ``PREFIX.scenario|data|negatives|task`` tags (negatives comma-separated)."""
        negatives = tuple(u.strip() for u in tags.get(prefix + "negatives", "").split(",") if u.strip())
        return cls(scenario=tags.get(prefix + "scenario") or default_scenario, data=tags.get(prefix + "data") or None,
                   negatives=negatives, task=tags.get(prefix + "task") or "classification", local_files=False)

    def describe(self) -> str:
        """Where the owner data comes from, for messages (never the data itself)."""
        return f"data {self.data}" if self.data else f"scenario {self.scenario}"


def owner_data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--data``, ``--negative`` and ``--task`` of the ``protect`` commands (MLflow and Hub alike)."""
    import click

    from fp_registry.cli import TASK_CHOICE

    options = [
        click.option("--data", "-d", help="the owner's own data instead of a scenario's: an .npz with X (and y), a "
                                          "bundled dataset name, or an MLflow artifact URI of an .npz "
                                          "(runs:/RUN_ID/PATH.npz)"),
        click.option("--negative", "negatives", multiple=True, metavar="MODEL",
                     help="an independent reference model of the same task, e.g. models:/NAME/VERSION or "
                          "hf://ORG/REPO (repeatable; needed with --data)"),
        click.option("--task", "-t", type=TASK_CHOICE, default="classification", show_default=True,
                     help="the owner's task (with --data)")]
    for option in reversed(options):
        command = option(command)
    return command


def fingerprint_inputs(inputs: ProtectInputs, method: str, n_negatives: int,
                       tracking_uri: str | None = None) -> dict[str, Any]:
    """``fingerprint()`` keyword arguments: task, owner data and, for methods that calibrate, ``negatives``."""
    kwargs = owner_data_kwargs(inputs, tracking_uri)
    refs = reference_models(inputs, method, n_negatives, tracking_uri)
    return kwargs if refs is None else {**kwargs, "negatives": refs}


def owner_data_kwargs(inputs: ProtectInputs, tracking_uri: str | None = None) -> dict[str, Any]:
    """``task``, ``data`` and ``labels`` (and a generator's latent ``input_shape``) for ``fingerprint()``."""
    if inputs.data is None:
        from fp_registry.scenarios import owner_inputs

        return owner_inputs(inputs.scenario)
    x, y = load_owner_data(inputs.data, tracking_uri, inputs.local_files)
    return {"task": inputs.task, "data": x, "labels": y}


def reference_models(inputs: ProtectInputs, method: str, n: int, tracking_uri: str | None = None) -> list[Any] | None:
    """Independent reference models for a method that calibrates on them (None for methods that build a zoo).

    The named ``negatives``, else ``n`` of the scenario's trained with seeds 1000+ (never a suspect's seed in the
    zoos and tests). Owner data of its own needs named references: nothing here can train look-alikes for it.
    """
    from fp_registry.methods import get_method_class

    if get_method_class(method).zoo_use != "calibrate":
        return None
    if inputs.negatives:
        local = [u for u in inputs.negatives if not u.startswith(("models:/", "hf://", "scenario://"))]
        if local and not inputs.local_files:  # as for data: the worker loads no files of its own for taggers
            raise UsageError(f"reference {local[0]} names a file of the worker's machine, which tags may not",
                             "name registered versions (models:/NAME/VERSION) or Hub repos (hf://ORG/REPO)")
        return [(uri, _load_reference(uri, tracking_uri)) for uri in inputs.negatives]
    if inputs.data is not None:
        raise UsageError(f"method {method} calibrates on independent reference models and none were named",
                         "name 3 or more models trained independently on the owner's task: --negative MODEL "
                         "(repeatable), a comma-separated fp_registry.negatives tag, or negatives in protect.json")
    from fp_registry.scenarios import train_owner

    return [train_owner(inputs.scenario, seed=1000 + i) for i in range(n)]


def _load_reference(uri: str, tracking_uri: str | None) -> Any:
    """A named reference model; one that cannot be loaded is a wrong name, which no retry heals."""
    from fp_registry.errors import ModelLoadError
    from fp_registry.loading import load_model

    try:
        return load_model(uri, **({"tracking_uri": tracking_uri} if tracking_uri else {}))
    except ModelLoadError as exc:
        raise UsageError(f"reference model {uri} cannot be loaded: {str(exc).splitlines()[0][:160]}",
                         "name references that exist and load (models:/NAME/VERSION, hf://ORG/REPO, a path)") \
            from None


def load_owner_data(ref: str, tracking_uri: str | None = None, local_files: bool = True) -> tuple[Any, Any]:
    """``(X, y)`` from a bundled dataset name, a local ``.npz`` (if ``local_files``), or an ``.npz`` in MLflow."""
    from fp_registry.data import DATASETS, load_data_arg

    if not ref.startswith(MLFLOW_ARTIFACT_SCHEMES):
        if not local_files and ref not in DATASETS:
            # fingerprints carry queries drawn from the data: a tag naming a file of the worker's machine would
            # let anyone who can tag a model publish that file through the artifact store
            raise UsageError(f"owner data {ref} names a file of the worker's machine, which tags may not",
                             "keep it with the registry: a run artifact (runs:/RUN_ID/PATH.npz) or the Hub vault "
                             "(fpreg hf protect REPO --data FILE.npz --on-push)")
        return load_data_arg(ref)
    if not ref.endswith(".npz"):
        raise UsageError(f"owner data {ref} is not an .npz artifact", "log it with np.savez(path, X=..., y=...) "
                                                                       "and mlflow.log_artifact(path)")
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:  # the owner's data stays on disk only while it is read
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=tmp, tracking_uri=tracking_uri)
        except MlflowException as exc:
            first = f"cannot download owner data {ref}: {(str(exc).splitlines() or [''])[0][:160]}"
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # a wrong URI, not an outage
                raise UsageError(first, "check the run id and artifact path (mlflow artifacts list --run-id RUN)") \
                    from None
            raise BackendError(first, ref) from None
        return load_data_arg(path)
