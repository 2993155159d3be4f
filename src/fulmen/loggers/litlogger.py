"""LitLogger: metrics, metadata, files and models to Lightning AI's experiment tracking (the `litlogger` package).

`litlogger` is an optional package (`pip install litlogger`), imported when it is first needed. Only global rank
zero creates the experiment and writes.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from typing import Any

from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.utilities import add_prefix, params_dict, require_package, scan_checkpoints
from fulmen.utilities.rank_zero import rank_zero_only


class LitLogger(Logger):
    """Log to lightning.ai with `litlogger`.

    Args:
        root_dir: local folder for logs and metadata (default `./lightning_logs`).
        name: experiment name (default: a name `litlogger` generates).
        teamspace: the teamspace the charts and artifacts appear in.
        metadata: extra key/value tags for the experiment.
        store_step: store each value's step with it (passed to `litlogger.Experiment`).
        log_model: upload `ModelCheckpoint` checkpoints as models: at the end of the run (as they are saved when
            `save_top_k=-1`).
        save_logs: capture and upload the terminal output.
        checkpoint_name: model name of uploaded checkpoints (default: the experiment's name).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, root_dir: str | os.PathLike | None = None, name: str | None = None,
                 teamspace: str | None = None, metadata: dict[str, str] | None = None, store_step: bool = True,
                 log_model: bool = False, save_logs: bool = True, checkpoint_name: str | None = None) -> None:
        require_package("litlogger", "litlogger", "LitLogger")
        super().__init__()
        self._root_dir = os.fspath(root_dir or "./lightning_logs")
        if name is None:
            from litlogger.generator import _create_name

            name = _create_name()
        self._name = name
        self._version: str | None = None
        self._teamspace = teamspace
        self._sub_dir: str | None = None
        self._prefix = ""
        self._experiment: Any = None
        self._step = -1
        self._metadata = metadata or {}
        self._store_step = store_step
        self._log_model = log_model
        self._save_logs = save_logs
        self._checkpoint_callback: Any = None
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_name = checkpoint_name

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str | None:
        """When the experiment was created (UTC, e.g. `2025-01-31T12-00-00.000+00-00`); None before."""
        return self._version

    @property
    def root_dir(self) -> str:
        return self._root_dir

    @property
    def log_dir(self) -> str:
        """`<root_dir>/<name>[/<sub_dir>]`, with `~` and environment variables expanded."""
        log_dir = os.path.join(self.root_dir, self.name)
        if isinstance(self.sub_dir, str):
            log_dir = os.path.join(log_dir, self.sub_dir)
        return os.path.expanduser(os.path.expandvars(log_dir))

    @property
    def save_dir(self) -> str:
        return self.log_dir

    @property
    def sub_dir(self) -> str | None:
        return self._sub_dir

    @property
    def _experiment_name(self) -> str:
        return self.name if self.version is None else f"{self.name}-{self.version}"

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The `litlogger.Experiment` (created, and its URL printed, on first use)."""
        if self._experiment is not None:
            return self._experiment
        import litlogger

        os.makedirs(self.root_dir, exist_ok=True)
        if self._version is None:
            # The creation time with ":" made "-", as Lightning 2.6 names it (its offset ends "+00-00", not "Z").
            stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            self._version = stamp.replace(":", "-")
        self._experiment = litlogger.Experiment(
            name=self._experiment_name, teamspace=self._teamspace,
            metadata={key: str(value) for key, value in self._metadata.items()}, store_step=self._store_step,
            store_created_at=True, log_dir=self.log_dir, save_logs=self._save_logs,
        )
        self._experiment.print_url()
        return self._experiment

    def run_identity(self) -> Any:
        return self._version

    def adopt_run_identity(self, identity: Any) -> None:
        self._version = identity

    @property
    @rank_zero_only
    def url(self) -> str:
        """The experiment's page on lightning.ai."""
        return self.experiment.url

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        experiment = self.experiment
        self._step = self._step + 1 if step is None else step  # without a step: one past the last one
        for key, value in add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            experiment[key].append(value.item() if hasattr(value, "item") else value, step=self._step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        """Store each hyperparameter as text metadata (`metrics` is not used, as in Lightning)."""
        self.log_metadata(params)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        warnings.warn("LitLogger cannot log the model graph; `log_graph` does nothing.", UserWarning, stacklevel=2)

    @rank_zero_only
    def save(self) -> None:
        pass  # litlogger sends as it goes

    @rank_zero_only
    def finalize(self, status: str | None = None) -> None:
        if self._experiment is None:
            return
        if self._checkpoint_callback is not None:
            self._scan_and_log_checkpoints(self._checkpoint_callback)
        self._experiment.finalize(status)

    @rank_zero_only
    def log_metadata(self, params: Any) -> None:
        """Store each key/value of `params` (a dict or Namespace) as text metadata."""
        experiment = self.experiment
        for key, value in params_dict(params).items():
            experiment[key] = str(value)

    @rank_zero_only
    def log_model(self, model: Any, staging_dir: str | None = None, verbose: bool = False, version: str | None = None,
                  metadata: dict[str, Any] | None = None) -> None:
        """Save `model` and upload it under the experiment's name (version: `version`, else the last step)."""
        from litlogger import Model

        self.experiment[self._experiment_name] = Model(model, version=self._model_version(version, self._step),
                                                       metadata=metadata, staging_dir=staging_dir)

    @rank_zero_only
    def log_model_artifact(self, path: str, verbose: bool = False, version: str | None = None) -> None:
        """Upload a saved model file or directory under the experiment's name."""
        from litlogger import Model

        self.experiment[self._experiment_name] = Model(path, version=self._model_version(version, self._step))

    @rank_zero_only
    def get_file(self, path: str, verbose: bool = True) -> str:
        """Download this experiment's file logged as `path` to `path`; returns the local path."""
        return self.experiment[_artifact_key(path)].save(path)

    @rank_zero_only
    def log_file(self, path: str) -> None:
        """Upload the file at `path` (stored under its path relative to the working directory)."""
        from litlogger import File

        self.experiment[_artifact_key(path)] = File(path)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model is False:
            return
        if checkpoint_callback.save_top_k == -1:
            self._scan_and_log_checkpoints(checkpoint_callback)
        else:
            self._checkpoint_callback = checkpoint_callback  # uploaded by `finalize`

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        from litlogger import Model

        for mtime, path, _, _ in scan_checkpoints(checkpoint_callback, self._logged_model_time):
            experiment = self.experiment
            key = self._checkpoint_name or experiment.name
            step = getattr(checkpoint_callback, "_last_global_step_saved", None)
            experiment[key] = Model(path, version=self._model_version(None, step))
            self._logged_model_time[path] = mtime

    @staticmethod
    def _model_version(version: str | None, step: int | None) -> str | None:
        if version is not None:
            return version
        return str(step) if step is not None and step >= 0 else None


def _artifact_key(path: str) -> str:
    """`path` relative to the working directory (just its file name when it lies outside), with `/` separators."""
    try:
        relative: str | None = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        relative = None
    key = relative if relative is not None and not relative.startswith("..") else os.path.basename(path)
    return key.replace("\\", "/")
