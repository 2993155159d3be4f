"""CSVLogger: metrics to `metrics.csv` and hyperparameters to `hparams.yaml` in `name/version_N/`."""

from __future__ import annotations

import csv
import os
from typing import Any

from fulmen.loggers.logger import VersionedDirectoryLogger, rank_zero_experiment
from fulmen.loggers.utilities import add_prefix, params_dict
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn


class ExperimentWriter:
    """Keeps metric rows and hyperparameters in memory and writes them as CSV and YAML."""

    NAME_HPARAMS_FILE = "hparams.yaml"
    NAME_METRICS_FILE = "metrics.csv"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.hparams: dict[str, Any] = {}
        self._hparams_written = True  # nothing to write until hyperparameters are logged
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        if os.path.isdir(log_dir) and os.listdir(log_dir):  # e.g. a version given again: as Lightning
            rank_zero_warn(f"Experiment logs directory {log_dir} exists and is not empty. Previous log files in this "
                           "directory will be deleted when the new ones are saved!")
            if os.path.isfile(self.metrics_file_path):
                os.remove(self.metrics_file_path)
        os.makedirs(log_dir, exist_ok=True)

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        self._hparams_written = False

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        row = {key: (value.item() if hasattr(value, "item") else value) for key, value in metrics_dict.items()}
        row["step"] = len(self.metrics) if step is None else step
        self.metrics.append(row)

    def save(self) -> None:
        from fulmen.core.saving import save_hparams_to_yaml

        if not self._hparams_written:  # saved after every logging call: rewrite only what changed
            save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)
            self._hparams_written = True
        if not self.metrics:
            return
        new_keys = sorted({key for row in self.metrics for key in row} - set(self.metrics_keys))
        if new_keys or not os.path.exists(self.metrics_file_path):
            # A new column means the header changes: rewrite the whole file with the old rows included.
            old_rows = _read_rows(self.metrics_file_path) if self.metrics_keys else []
            self.metrics_keys = sorted(set(self.metrics_keys) | set(new_keys))
            rows, mode = old_rows + self.metrics, "w"
        else:
            rows, mode = self.metrics, "a"
        with open(self.metrics_file_path, mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)
        self.metrics = []


def _read_rows(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return [{key: value for key, value in row.items() if value != ""} for row in csv.DictReader(file)]


class CSVLogger(VersionedDirectoryLogger):
    """Log to CSV and YAML files on the local filesystem."""

    LOGGER_JOIN_CHAR = "-"  # between `prefix` and a metric name

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(save_dir, name, version)
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._experiment: ExperimentWriter | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = ExperimentWriter(self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any = None) -> None:
        self.experiment.log_hparams(dict(params_dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        experiment = self.experiment
        if step is None:  # as Lightning: the rows waiting to be written count as the step
            step = len(experiment.metrics)
        experiment.log_metrics(metrics, step)
        if (step + 1) % self._flush_every == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        self.experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is None:
            return
        self.save()
