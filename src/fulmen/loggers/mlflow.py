"""MLFlowLogger: metrics and parameters to an MLflow tracking store (a local `file:` store needs no server).

`mlflow` (or `mlflow-skinny`) is an optional dependency, imported when the logger is created.
"""

from __future__ import annotations

import os
import re
import time
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.tensorboard import _flatten
from fulmen.loggers.utilities import add_prefix
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

_FILE_PREFIX = "file:"
_MAX_PARAM_LENGTH = 250
_MAX_PARAMS_PER_BATCH = 100


class MLFlowLogger(Logger):
    """Log to MLflow; `name` is the experiment id and `version` the run id, as in Lightning."""

    LOGGER_JOIN_CHAR = "-"  # between `prefix` and a metric name

    def __init__(self, experiment_name: str = "lightning_logs", run_name: str | None = None,
                 tracking_uri: str | None = os.getenv("MLFLOW_TRACKING_URI"), tags: dict[str, Any] | None = None,
                 save_dir: str | None = "./mlruns", log_model: bool | str = False, prefix: str = "",
                 artifact_location: str | None = None, run_id: str | None = None,
                 synchronous: bool | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise ModuleNotFoundError(
                "MLFlowLogger needs the `mlflow` package: `pip install mlflow-skinny` (or `pip install "
                "fulmen[mlflow]`)."
            ) from error
        super().__init__()
        self._tracking_uri = tracking_uri or f"{_FILE_PREFIX}{save_dir}"
        self._experiment_name = experiment_name
        self._run_name = run_name
        self.tags = tags
        self._log_model = log_model
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}
        if self._tracking_uri.startswith(_FILE_PREFIX):
            # Recent MLflow refuses plain-file stores unless asked; a `file:` URI (the default) is that request.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._client = MlflowClient(self._tracking_uri)
        self._checkpoint_paths: set[str] = set()
        self._initialized = False

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The `MlflowClient`; the experiment and run are created on first use."""
        if self._initialized:
            return self._client
        if self._run_id is not None:
            self._experiment_id = self._client.get_run(self._run_id).info.experiment_id
        else:
            found = self._client.get_experiment_by_name(self._experiment_name)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                self._experiment_id = self._client.create_experiment(
                    name=self._experiment_name, artifact_location=self._artifact_location)
            tags = {key: str(value) for key, value in (self.tags or {}).items()}
            if self._run_name is not None:
                tags.setdefault("mlflow.runName", self._run_name)
            self._run_id = self._client.create_run(experiment_id=self._experiment_id, tags=tags).info.run_id
        self._initialized = True
        return self._client

    def run_identity(self) -> Any:
        return (self._experiment_id, self._run_id) if self._initialized else None

    def adopt_run_identity(self, identity: Any) -> None:
        self._experiment_id, self._run_id = identity

    @property
    def run_id(self) -> str | None:
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> str | None:
        return self.experiment_id

    @property
    def version(self) -> str | None:
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        if self._tracking_uri.startswith(_FILE_PREFIX):
            return self._tracking_uri[len(_FILE_PREFIX):]
        return None

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        from mlflow.entities import Param

        if isinstance(params, Namespace):
            params = vars(params)
        flat = _flatten(dict(params or {}))
        entries = [Param(key=key, value=str(value)[:_MAX_PARAM_LENGTH]) for key, value in flat.items()]
        for start in range(0, len(entries), _MAX_PARAMS_PER_BATCH):
            self.experiment.log_batch(run_id=self.run_id, params=entries[start:start + _MAX_PARAMS_PER_BATCH],
                                      **self._batch_kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        entries = []
        for key, value in add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(value, str):
                rank_zero_warn(f"MLFlowLogger drops the string metric {key}={value!r}; log numbers only.")
                continue
            clean = re.sub(r"[^a-zA-Z0-9_/. -]+", "", key)
            if clean != key:
                rank_zero_warn(f"MLflow allows only letters, digits and '_/. -' in metric names; {key!r} is logged "
                               f"as {clean!r}.", category=RuntimeWarning)
            entries.append(Metric(key=clean, value=float(value), timestamp=timestamp_ms, step=step or 0))
        self.experiment.log_batch(run_id=self.run_id, metrics=entries, **self._batch_kwargs)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Remember checkpoints to upload as artifacts when `log_model` is set."""
        if self._log_model:
            for path in (getattr(checkpoint_callback, "best_model_path", ""),
                         getattr(checkpoint_callback, "last_model_path", "")):
                if path:
                    self._checkpoint_paths.add(os.fspath(path))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if not self._initialized:
            return
        for path in sorted(self._checkpoint_paths):
            if os.path.exists(path):
                self._client.log_artifact(self._run_id, path, artifact_path="model/checkpoints")
        self._checkpoint_paths.clear()
        mlflow_status = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}.get(status, status)
        self._client.set_terminated(self._run_id, mlflow_status)
