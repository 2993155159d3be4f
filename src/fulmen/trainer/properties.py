"""The Trainer's read-only views: counters, stages, metrics, loggers, flags and hardware, as users read them.

Owns: nothing but reading; every value lives in the Trainer's collaborators (state, config, strategy,
metrics router, callbacks). Kept apart from `trainer.py` so the run sequence there stays short.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from fulmen.callbacks.callback_list import has_timer
from fulmen.trainer.config import ConfigFlag
from fulmen.trainer.state import RunningStage, TrainerFn, TrainerState, TrainerStatus
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule


class _FromConfig(ConfigFlag):
    """A read-only Trainer attribute that shows the parsed value of the flag of the same name."""

    holder = "_config"

    def __set__(self, trainer: Any, value: Any) -> None:
        # Without this, assignment would make an instance attribute that the loops never read.
        raise AttributeError(f"`trainer.{self._name}` is read-only: pass `Trainer({self._name}=...)` instead.")


class _FromStrategy(_FromConfig):
    """A read-only Trainer attribute answered by the strategy (ranks, world size)."""

    def __get__(self, trainer: Any, owner: type | None = None) -> Any:
        return self if trainer is None else getattr(trainer.strategy, self._name)

    def __set__(self, trainer: Any, value: Any) -> None:
        raise AttributeError(f"`trainer.{self._name}` is read-only: the strategy and cluster environment set it.")


class _AccumulationFactor(_FromConfig):
    """`trainer.accumulate_grad_batches`: the flag's value, which (as in Lightning) code may change between batches,
    e.g. `GradientAccumulationScheduler` at each epoch start. Persists across runs like Lightning's attribute."""

    def __set__(self, trainer: Any, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`trainer.accumulate_grad_batches` must be an int >= 1; received {value!r}.")
        trainer._config.accumulate_grad_batches = value
        loop = trainer._current.fit_loop
        if loop is not None:
            loop.accumulate = value  # the running fit loop reads its own copy (no lookup per step)


class TrainerProperties:
    """Properties of `fulmen.Trainer` (Lightning's names); mixed into the Trainer class only."""

    # -- read-only views users and callbacks read ------------------------------------------------------

    @property
    def lightning_module(self) -> LightningModule:
        return self._current.module  # type: ignore[return-value]

    @property
    def datamodule(self) -> Any:
        return self._current.datamodule

    @property
    def callbacks(self) -> list[Any]:
        """This run's callbacks (the Trainer's plus the module's `configure_callbacks()`); before a run, the Trainer's."""
        return self._current.callbacks

    @callbacks.setter
    def callbacks(self, callbacks: list[Any]) -> None:
        self._callbacks = self._current.callbacks = list(callbacks)

    @property
    def hook_tracer(self) -> Any:
        """The `fulmen.debug.HookTracer` recording this Trainer's hook calls (`trace_hooks=`), or None."""
        return self._hook_tracer

    @property
    def fit_loop(self) -> Any:
        """The running (or last) fit's loop; None before `fit`."""
        return self._current.fit_loop

    @property
    def predict_loop(self) -> Any:
        """The running (or last) predict's loop (batch indices and predictions for writers); None before `predict`."""
        return self._current.predict_loop

    @property
    def ckpt_path(self) -> str | os.PathLike | None:
        """The checkpoint the current (or last) run restored. Set it to have every later run load that checkpoint
        (until it is set to None, or a run passes its own `ckpt_path`), as in Lightning."""
        return self._current.ckpt_path

    @ckpt_path.setter
    def ckpt_path(self, path: str | os.PathLike | None) -> None:
        self._checkpointing.user_path = path
        self._current.ckpt_path = path

    @property
    def is_last_batch(self) -> bool:
        return self._current.is_last_batch

    @property
    def num_training_batches(self) -> int | float:
        return self._current.num_training_batches

    @property
    def num_sanity_val_batches(self) -> list[int | float]:
        return self._current.num_sanity_val_batches

    @property
    def num_predict_batches(self) -> list[int | float]:
        return self._current.num_predict_batches

    @property
    def model(self) -> Any:
        return self.strategy.model

    @property
    def state(self) -> TrainerState:
        return self._state

    @property
    def current_epoch(self) -> int:
        return self._state.current_epoch

    @property
    def global_step(self) -> int:
        return self._state.global_step

    @property
    def should_stop(self) -> bool:
        return self._state.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self._state.should_stop = bool(value)

    @property
    def interrupted(self) -> bool:
        return self._state.status == TrainerStatus.INTERRUPTED

    def _stage_is(self, stage: RunningStage) -> bool:
        return self._state.stage == stage

    def _set_stage(self, stage: RunningStage, value: bool) -> None:
        if value:
            self._state.stage = stage
        elif self._state.stage == stage:
            self._state.stage = None

    training = property(lambda self: self._stage_is(RunningStage.TRAINING),
                        lambda self, value: self._set_stage(RunningStage.TRAINING, value))
    validating = property(lambda self: self._stage_is(RunningStage.VALIDATING),
                          lambda self, value: self._set_stage(RunningStage.VALIDATING, value))
    testing = property(lambda self: self._stage_is(RunningStage.TESTING),
                       lambda self, value: self._set_stage(RunningStage.TESTING, value))
    predicting = property(lambda self: self._stage_is(RunningStage.PREDICTING),
                          lambda self, value: self._set_stage(RunningStage.PREDICTING, value))
    sanity_checking = property(lambda self: self._stage_is(RunningStage.SANITY_CHECKING),
                               lambda self, value: self._set_stage(RunningStage.SANITY_CHECKING, value))

    @property
    def evaluating(self) -> bool:
        return self._state.stage is not None and self._state.stage.evaluating

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return self._metrics.callback_metrics

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        return self._metrics.logged_metrics

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        return self._metrics.progress_bar_metrics

    @property
    def loggers(self) -> list[Any]:
        return self._metrics.loggers

    @loggers.setter
    def loggers(self, loggers: list[Any]) -> None:
        self._metrics.loggers = loggers

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self.loggers = [] if logger is None else [logger]

    @property
    def log_dir(self) -> str:
        logger = self.logger
        directory = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) if logger else None
        return os.fspath(directory) if directory is not None else self.default_root_dir

    @property
    def accelerator(self) -> Any:
        """The `fulmen.accelerators.Accelerator` in use (the one passed as `accelerator=`, else the device's)."""
        return self._accelerator

    @property
    def default_root_dir(self) -> str:
        return self._config.default_root_dir

    log_every_n_steps = _FromConfig()
    max_epochs = _FromConfig()
    min_epochs = _FromConfig()
    max_steps = _FromConfig()
    min_steps = _FromConfig()
    accumulate_grad_batches = _AccumulationFactor()
    gradient_clip_val = _FromConfig()
    gradient_clip_algorithm = _FromConfig()
    check_val_every_n_epoch = _FromConfig()
    val_check_interval = _FromConfig()
    fast_dev_run = _FromConfig()
    num_sanity_val_steps = _FromConfig()
    limit_train_batches = _FromConfig()
    limit_val_batches = _FromConfig()
    limit_test_batches = _FromConfig()
    limit_predict_batches = _FromConfig()

    overfit_batches = _FromConfig()
    reload_dataloaders_every_n_epochs = _FromConfig()

    @property
    def validate_loop(self) -> Any:
        """The evaluation loop of the current or last `trainer.validate()` call (None if that was not the last)."""
        return self._evaluation_loop_of(TrainerFn.VALIDATING)

    @property
    def test_loop(self) -> Any:
        """The evaluation loop of the current or last `trainer.test()` call (None if that was not the last)."""
        return self._evaluation_loop_of(TrainerFn.TESTING)

    def _evaluation_loop_of(self, fn: TrainerFn) -> Any:
        return self._current.evaluation_loop if self._current.fn == fn else None

    @property
    def val_check_batch(self) -> int | float | None:
        """Training batches between validations in the current or last fit (inf: at epoch ends only)."""
        fit_loop = self._current.fit_loop
        return getattr(fit_loop, "val_check_batch", None)

    @property
    def enable_validation(self) -> bool:
        """Whether fit validates: validation data, a `validation_step`, and `limit_val_batches > 0`."""
        module = self.lightning_module
        return (module is not None and self._config.limit_val_batches > 0
                and self._hooks.module_defines("validation_step") and self._data.has_source("validate"))

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int] | None:
        """The rank split a distributed sampler gets (`num_replicas`, `rank`); None for a single process."""
        return self.strategy.distributed_sampler_kwargs

    @property
    def scaler(self) -> Any:
        """The precision plugin's gradient scaler (`"16-mixed"`), else None."""
        return getattr(self.strategy.precision_plugin, "scaler", None)

    @property
    def num_val_batches(self) -> list[int | float]:
        return self._current.num_val_batches

    @property
    def num_test_batches(self) -> list[int | float]:
        return self._current.num_test_batches

    @property
    def train_dataloader(self) -> Any:
        """The training dataloader of the current or last `fit` (None before it is requested)."""
        return self._current.dataloaders.get(RunningStage.TRAINING)

    @property
    def val_dataloaders(self) -> Any:
        """The validation dataloader(s) of the current or last run, shaped as given (a loader, list or dict)."""
        return self._current.dataloaders.get(RunningStage.VALIDATING)

    @property
    def test_dataloaders(self) -> Any:
        return self._current.dataloaders.get(RunningStage.TESTING)

    @property
    def predict_dataloaders(self) -> Any:
        return self._current.dataloaders.get(RunningStage.PREDICTING)

    @property
    def estimated_stepping_batches(self) -> int | float:
        """Optimizer steps the whole fit will take, from max_steps, max_epochs and accumulation.

        Read in `configure_optimizers` (e.g. to size a OneCycleLR), it requests the training dataloader early.
        """
        config = self._config
        max_epochs = config.resolved_max_epochs(has_timer(self.callbacks))
        if max_epochs == -1:
            return float("inf") if config.max_steps == -1 else config.max_steps
        if self._current.train_loader is None and self._state.fn == TrainerFn.FITTING:
            rank_zero_info("Loading `train_dataloader` to estimate the number of stepping batches.")
            self._data.train_loader()
        total_batches = self.num_training_batches
        if total_batches == float("inf"):
            return config.max_steps
        estimate = -(-total_batches // config.accumulate_grad_batches) * max(max_epochs, 1)  # ceil per epoch
        return min(estimate, config.max_steps) if config.max_steps != -1 else estimate

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self._optimization.optimizers

    @property
    def lr_scheduler_configs(self) -> list[Any]:
        return self._optimization.scheduler_configs

    @property
    def precision_plugin(self) -> Any:
        return self.strategy.precision_plugin

    @property
    def precision(self) -> str:
        return self.strategy.precision_plugin.precision

    world_size = _FromStrategy()
    global_rank = _FromStrategy()
    local_rank = _FromStrategy()
    node_rank = _FromStrategy()
    num_nodes = _FromStrategy()
    is_global_zero = _FromStrategy()

    @property
    def num_devices(self) -> int:
        return self.strategy.num_processes

    @property
    def device_ids(self) -> list[int]:
        """The device index of each process on this node (CPU processes count 0, 1, ...), as Lightning lists them."""
        devices = getattr(self.strategy, "parallel_devices", None) or [self.strategy.root_device]
        return [device.index or position for position, device in enumerate(devices)]

    @property
    def progress_bar_callback(self) -> Any:
        return next(iter(self._callbacks_marked("_is_progress_bar")), None)

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        return self._callbacks_marked("_is_checkpoint")

    @property
    def checkpoint_callback(self) -> Any:
        return next(iter(self.checkpoint_callbacks), None)

    @property
    def early_stopping_callbacks(self) -> list[Any]:
        return self._callbacks_marked("_is_early_stopping")

    @property
    def early_stopping_callback(self) -> Any:
        return next(iter(self.early_stopping_callbacks), None)

    def _callbacks_marked(self, marker: str) -> list[Any]:
        return [callback for callback in self.callbacks if getattr(callback, marker, False)]
