"""ThroughputMonitor: log batches/samples/items/FLOPs per second of training, validation, test and predict."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from fulmen.callbacks.callback import Callback
from fulmen.trainer.state import RunningStage, TrainerFn, logging_due
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn
from fulmen.utilities.throughput import Throughput, compute_dtype, get_available_flops

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class ThroughputMonitor(Callback):
    """Log `Throughput` metrics as `<stage>/<metric>` (`train/device/samples_per_sec`, `validate/time`, ...).

    Training values are logged when the Trainer logs (`log_every_n_steps`, after each optimizer step) with the
    `epoch`; evaluation and predict values at the stage's running batch count. The time spent validating is
    not counted as training time. Only rank 0 measures and logs. FLOPs come from a `flops_per_batch`
    attribute of the LightningModule (see `fulmen.utilities.measure_flops`).

    Args:
        batch_size_fn: the number of samples in a batch (`lambda batch: batch.size(0)`).
        length_fn: the number of items (e.g. tokens) in a batch, to log `items_per_sec`; None to skip.
        **kwargs: passed to `Throughput` (`window_size`, `separator`).
    """

    def __init__(self, batch_size_fn: Callable[[Any], int], length_fn: Callable[[Any], int] | None = None,
                 **kwargs: Any) -> None:
        unknown = set(kwargs) - {"window_size", "separator"}
        if unknown:
            raise TypeError(f"`ThroughputMonitor` got unexpected arguments {sorted(unknown)}; it passes only "
                            "`window_size` and `separator` on to `Throughput`.")
        self.kwargs = kwargs
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.available_flops: int | None = None
        self._throughputs: dict[RunningStage, Throughput] = {}
        self._t0s: dict[RunningStage, float] = {}
        self._lengths: dict[RunningStage, int] = {}
        self._samples: dict[RunningStage, int] = {}
        self._batches: dict[RunningStage, int] = {}
        self._module_has_flops: bool | None = None
        # Evaluation/predict batches seen, the step their values are logged at. Lightning's counters run on
        # across the runs of one loop; the validation inside fit restarts with each training epoch.
        self._eval_counts: dict[tuple[TrainerFn, RunningStage], int] = {}
        self._run_count = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.available_flops = get_available_flops(trainer.strategy.root_device,
                                                   compute_dtype(trainer.precision_plugin))

        def make() -> Throughput:
            return Throughput(available_flops=self.available_flops, world_size=trainer.world_size, **self.kwargs)

        if stage == TrainerFn.FITTING:
            self._throughputs[RunningStage.TRAINING] = make()
            self._throughputs[RunningStage.VALIDATING] = make()
        else:
            running = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING,
                       TrainerFn.PREDICTING: RunningStage.PREDICTING}[TrainerFn(stage)]
            self._throughputs[running] = make()

    # -- measuring ---------------------------------------------------------------------------------

    def _start(self, trainer: Trainer) -> None:
        stage = trainer.state.stage
        # In fit every start begins a new measurement; separate validate/test/predict runs add up (Lightning).
        if trainer.state.fn == TrainerFn.FITTING or stage not in self._samples:
            self._throughputs[stage].reset()
            self._lengths[stage] = self._samples[stage] = self._batches[stage] = 0
        self._t0s[stage] = time.perf_counter()

    @torch.inference_mode()  # the user's functions may build tensors; no graph is wanted
    def _update(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        stage = trainer.state.stage
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock must see the batch's kernels finished
        elapsed = time.perf_counter() - self._t0s[stage]
        if self.length_fn is not None:
            self._lengths[stage] += self.length_fn(batch)
        if self._module_has_flops is None:
            self._module_has_flops = hasattr(pl_module, "flops_per_batch")
            if not self._module_has_flops:
                rank_zero_warn(f"`ThroughputMonitor` computes FLOPs from a `flops_per_batch` attribute or property; "
                               f"define one on {type(pl_module).__name__} (see `fulmen.utilities.measure_flops`).")
        self._samples[stage] += self.batch_size_fn(batch)
        self._batches[stage] += 1
        self._throughputs[stage].update(
            time=elapsed, batches=self._batches[stage], samples=self._samples[stage],
            lengths=None if self.length_fn is None else self._lengths[stage],
            flops=pl_module.flops_per_batch if self._module_has_flops else None,
        )

    def _log(self, trainer: Trainer, step: int | None) -> None:
        stage = trainer.state.stage
        throughput = self._throughputs[stage]
        metrics = {f"{stage.value}{throughput.separator}{key}": value for key, value in throughput.compute().items()}
        loggers = trainer.loggers
        if not loggers:
            return
        trainer.logged_metrics.update(metrics)
        if step is None:  # training: at the Trainer's logging step, with the epoch (as `self.log` values)
            metrics["epoch"] = trainer.current_epoch
            step = trainer.state.batches_that_stepped
        for logger in loggers:
            logger.log_metrics(metrics, step=step)
            logger.save()

    def _eval_batch_done(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        key = (trainer.state.fn, trainer.state.stage)
        count = self._eval_counts[key] = self._eval_counts.get(key, 0) + 1
        self._run_count += 1
        self._update(trainer, pl_module, batch)
        every = trainer.log_every_n_steps
        if every and (self._run_count % every == 0 or trainer.should_stop):
            self._log(trainer, count)

    def _eval_start(self, trainer: Trainer) -> None:
        self._run_count = 0  # batches of this run: when they are logged follows `log_every_n_steps`
        self._start(trainer)

    # -- hooks -------------------------------------------------------------------------------------

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, *_: Any) -> None:
        self._start(trainer)

    @rank_zero_only
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_counts.pop((TrainerFn.FITTING, RunningStage.VALIDATING), None)

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int, *_: Any) -> None:
        self._update(trainer, pl_module, batch)
        state = trainer.state
        # Logged once per optimizer step (not while accumulating), when the Trainer's logging is due.
        if not trainer.fit_loop.accumulating(batch_idx, trainer.is_last_batch) and logging_due(
                state.batches_that_stepped, trainer.log_every_n_steps, state.should_stop):
            self._log(trainer, None)

    @rank_zero_only
    def on_validation_start(self, trainer: Trainer, *_: Any) -> None:
        if not trainer.sanity_checking:
            self._eval_start(trainer)

    @rank_zero_only
    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                *_: Any, **__: Any) -> None:
        if not trainer.sanity_checking:
            self._eval_batch_done(trainer, pl_module, batch)

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, *_: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        # Move the training clock's start forward by the validation's duration (and the gap before it),
        # so training rates count training time only.
        train_times = self._throughputs[RunningStage.TRAINING]._time
        val_times = self._throughputs[RunningStage.VALIDATING]._time
        train_end = self._t0s[RunningStage.TRAINING] + (train_times[-1] if train_times else 0.0)
        val_time = val_times[-1] if val_times else 0.0
        self._t0s[RunningStage.TRAINING] += self._t0s[RunningStage.VALIDATING] - train_end + val_time

    @rank_zero_only
    def on_test_start(self, trainer: Trainer, *_: Any) -> None:
        self._eval_start(trainer)

    @rank_zero_only
    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any,
                          **__: Any) -> None:
        self._eval_batch_done(trainer, pl_module, batch)

    @rank_zero_only
    def on_predict_start(self, trainer: Trainer, *_: Any) -> None:
        self._eval_start(trainer)

    @rank_zero_only
    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             *_: Any, **__: Any) -> None:
        self._eval_batch_done(trainer, pl_module, batch)
