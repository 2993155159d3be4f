"""TensorBoardLogger: event files TensorBoard reads, plus `hparams.yaml`, in `name/version_N/`.

`tensorboard` is an optional dependency, imported only when the first event is written.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

import torch

from fulmen.loggers.logger import VersionedDirectoryLogger, rank_zero_experiment
from fulmen.loggers.utilities import add_prefix, params_dict
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn


class TensorBoardLogger(VersionedDirectoryLogger):
    """Log scalars, hyperparameters and the model graph for TensorBoard (`tensorboard --logdir lightning_logs`)."""

    NAME_HPARAMS_FILE = "hparams.yaml"
    LOGGER_JOIN_CHAR = "-"  # between `prefix` and a metric name

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, log_graph: bool = False, default_hp_metric: bool = True,
                 prefix: str = "", sub_dir: str | os.PathLike | None = None, **kwargs: Any) -> None:
        super().__init__(save_dir, name, version, sub_dir)
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._writer_kwargs = kwargs
        self._experiment: Any = None
        self.hparams: dict[str, Any] = {}
        self._hparams_written = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_experiment"] = None  # a SummaryWriter holds open files; a new process opens its own
        return state

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The `torch.utils.tensorboard.SummaryWriter` writing this version's event files."""
        if self._experiment is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ModuleNotFoundError(
                    "TensorBoardLogger needs the `tensorboard` package: `pip install tensorboard` "
                    "(or `pip install fulmen[tensorboard]`), or use `CSVLogger`."
                ) from error
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._writer_kwargs)
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        for key, value in add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            if isinstance(value, Mapping):
                self.experiment.add_scalars(key, dict(value), step)
            else:
                self.experiment.add_scalar(key, value, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Mapping[str, float] | float | None = None,
                        step: int | None = None) -> None:
        """Record hyperparameters in `hparams.yaml` and TensorBoard's HPARAMS tab, with `metrics` (a dict, or one
        number logged as `hp_metric`; `hp_metric=-1` by default) at `step`."""
        params = dict(params_dict(params))
        self.hparams.update(params)
        self._hparams_written = False
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else None
        elif not isinstance(metrics, Mapping):
            metrics = {"hp_metric": metrics}
        if metrics:
            from torch.utils.tensorboard.summary import hparams as hparams_summary

            self.log_metrics(metrics, step)
            flat = {key: _tensorboard_value(value) for key, value in _flatten(params).items()}
            writer = self.experiment._get_file_writer()
            for summary in hparams_summary(flat, dict(metrics)):
                writer.add_summary(summary, step)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Write the model graph, tracing `input_array` (or the module's `example_input_array`)."""
        if not self._log_graph:
            return
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:  # Lightning's words, then the fix
            rank_zero_warn("Could not log computational graph to TensorBoard: The `model.example_input_array` "
                           "attribute is not set or `input_array` was not given. Set `example_input_array` on the "
                           "module, or pass `input_array`.")
            return
        if not isinstance(input_array, (torch.Tensor, tuple)):
            rank_zero_warn("Could not log computational graph to TensorBoard: The `input_array` or "
                           f"`model.example_input_array` has type {type(input_array)} which can't be traced by "
                           "TensorBoard. Make the input array a tuple representing the positional arguments to the "
                           "model's `forward()` implementation.")
            return
        from fulmen.utilities.apply_func import move_data_to_device

        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        scripting = getattr(model, "_jit_is_scripting", None)
        if scripting is not None:  # tracing reads every attribute: `trainer` must not raise on a detached module
            model._jit_is_scripting = True
        try:
            self.experiment.add_graph(model, move_data_to_device(input_array, device))
        finally:
            if scripting is not None:
                model._jit_is_scripting = scripting

    @rank_zero_only
    def save(self) -> None:
        from fulmen.core.saving import save_hparams_to_yaml

        if self._experiment is not None:
            self._experiment.flush()
        # The Trainer saves after every logging call; rewrite hparams.yaml only when it changed.
        if not self._hparams_written and os.path.isdir(self.log_dir):
            save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)
            self._hparams_written = True

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.save()
            self._experiment.close()
            self._experiment = None


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _tensorboard_value(value: Any) -> Any:
    """TensorBoard's hparams accept numbers, strings, booleans and tensors of at most one dimension; anything else
    (an array of more dimensions too, as Lightning) goes as text."""
    if getattr(value, "ndim", 0) > 1:
        return str(value)
    if isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return str(value)
