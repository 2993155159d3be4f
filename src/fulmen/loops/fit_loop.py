"""FitLoop: epochs → batches → forward/backward → optimizer and scheduler steps → validation checks.

Owns: *when* everything in `fit` happens after the sanity check, read top to bottom. What happens
is delegated: hooks to `HookDispatch`, devices to the Strategy, values to the MetricsRouter, and
continuing from a checkpoint taken inside an epoch to `loops/resume.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable

import torch

from fulmen.callbacks.callback_list import has_timer
from fulmen.loops.batch_iterator import data_generators, iterate_batches, profiled_batches, set_sampler_epoch
from fulmen.loops.resume import finish_epoch_end, inside_epoch, resume_epoch
from fulmen.loops.step_output import manual_step_output, split_training_output
from fulmen.loops.validation_schedule import ValidationSchedule
from fulmen.trainer.config import ConfigFlag
from fulmen.trainer.profiled_hooks import profiled, strategy_action
from fulmen.trainer.state import RunningStage
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn
from fulmen.utilities.seed import capture_rng_states, isolate_rng
from fulmen.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from fulmen.loops.evaluation_loop import EvaluationLoop
    from fulmen.results.metrics_router import MetricsRouter
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.config import TrainerConfig
    from fulmen.trainer.data_source import DataSource
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.optimization.optimization import Optimization
    from fulmen.trainer.run import Run
    from fulmen.trainer.signals import SignalStop
    from fulmen.trainer.state import TrainerState

Batches = Iterator[tuple[int, Any, bool]]
# Lightning's profiler action for drawing a training batch (named after its loop class).
TRAIN_NEXT = "[_TrainingEpochLoop].train_dataloader_next"


class FitLoop(ValidationSchedule):
    """Runs training epochs with periodic validation until a stopping condition holds.

    Args:
        run: the run being fit (module, batch counts, the checkpoint position to resume from).
        state: the counters and `should_stop`.
        config: the Trainer's flags.
        hooks, metrics, optimization, strategy, data: the run's collaborators (no Trainer needed).
        val_loop: validation inside fit (and the sanity check).
        signal_stop: asked after each optimizer step whether SIGTERM/SIGINT ends fit.
        step_schedulers: `(interval, batch_idx, plateau=False, skip=False)`: steps the LR schedulers due.
    """

    def __init__(self, run: Run, state: TrainerState, config: TrainerConfig, hooks: HookDispatch,
                 metrics: MetricsRouter, optimization: Optimization, strategy: Strategy, data: DataSource,
                 val_loop: EvaluationLoop, signal_stop: SignalStop, step_schedulers: Callable[..., None]) -> None:
        self.run_state, self.state, self.config = run, state, config
        self.hooks, self.metrics, self.optimization = hooks, metrics, optimization
        self.strategy, self.data, self.val_loop = strategy, data, val_loop
        self.signal_stop, self.step_schedulers = signal_stop, step_schedulers
        config.max_epochs = config.resolved_max_epochs(has_timer(run.callbacks))
        # With only `min_steps`, Lightning still finishes the first epoch before honouring `should_stop`.
        self.min_epochs = config.min_epochs if config.min_epochs is not None else (1 if config.min_steps else 0)
        self.min_steps = config.min_steps or 0
        self.accumulate = config.accumulate_grad_batches
        # Callbacks may change `max_epochs` and `accumulate` during fit, and set `skip_backward` for a forward-only
        # epoch (StochasticWeightAveraging's BatchNorm pass): training_step runs, zero_grad and backward do not.
        self.skip_backward = False
        self.automatic = True
        # The closure is bound once: per step it only reads the current batch from `self`.
        self._closure = self._forward_backward
        self._backward = optimization.backward  # timed as the strategy's backward when profiling (`_train`)
        self._batch: Any = None
        self._batch_idx = 0
        self._zero_grad_due = True
        self._step_output: dict[str, Any] = {}
        self._epoch_results_open = False  # whether this epoch's training results collection is started
        self.total_batch_idx = 0
        # Where the loop is, so a checkpoint taken at any hook can resume exactly (see resume_state).
        self.phase = "between_batches"
        self.batches_done = 0
        self.epoch_finished = False
        self.epoch_start_rng: dict[str, Any] = {}
        self.signal_state: dict[str, Any] | None = None  # the loop state when a signal stopped training
        self._told_min_not_met = False

    # -- stopping -------------------------------------------------------------------------------------

    # `max_epochs`/`max_steps` are the Trainer's: a change (a callback's during fit, or `trainer.fit_loop.max_epochs
    # = 10` before fitting again to train on, as Lightning's docs show) holds for this fit and the next ones, and
    # `trainer.max_epochs` reads it.
    max_epochs = ConfigFlag()
    max_steps = ConfigFlag()

    def _can_stop_early(self) -> bool:
        state = self.state
        return state.current_epoch >= self.min_epochs and state.global_step >= self.min_steps

    def _max_steps_reached(self) -> bool:
        return self.max_steps != -1 and self.state.global_step >= self.max_steps

    def stop_due(self) -> bool:
        """Whether training stops after the current batch (`max_steps`, or `should_stop` once allowed)."""
        if self._max_steps_reached():
            return True
        if not self.state.should_stop:
            return False
        if self._can_stop_early():
            return True
        if not self._told_min_not_met:  # once, as Lightning's info
            self._told_min_not_met = True
            rank_zero_info(f"Trainer was signaled to stop but the required `min_epochs={self.min_epochs!r}` or "
                           f"`min_steps={self.config.min_steps!r}` has not been met. Training will continue...")
        return False

    def done(self) -> bool:
        """Whether fit is over before the next epoch starts."""
        state = self.state
        if self._max_steps_reached():
            rank_zero_info(f"`Trainer.fit` stopped: `max_steps={self.max_steps}` reached.")
            return True
        if self.max_epochs != -1 and state.current_epoch >= self.max_epochs:
            rank_zero_info(f"`Trainer.fit` stopped: `max_epochs={self.max_epochs}` reached.")
            return True
        return state.should_stop and self._can_stop_early()

    # -- the loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        """Sanity-check validation, then train epoch by epoch until a stopping condition holds."""
        val_loop = self.val_loop
        val_loop.enabled = self._validation_enabled()
        if val_loop.enabled and self.config.num_sanity_val_steps > 0 and not self._restarting():
            with isolate_rng():  # the sanity check must not change the data order or dropout of training
                self._sanity_check()
        # Lightning requests no training data with `limit_train_batches=0` (`num_training_batches` stays inf).
        num_batches = 0 if self.config.limit_train_batches == 0 else self.data.train_loader()[1]
        config = self.config
        if self.metrics.loggers and 0 < num_batches < config.log_every_n_steps and not config.fast_dev_run:
            rank_zero_warn(f"The number of training batches ({num_batches}) is smaller than the logging interval "
                           f"Trainer(log_every_n_steps={config.log_every_n_steps}). Set a lower value for "
                           "log_every_n_steps if you want to see logs for the training epoch.",
                           category=PossibleUserWarning)  # Lightning's warning
        saved = self.run_state.resume
        if saved is not None and saved["phase"] == "epoch_end" and num_batches:
            # Lightning shows the next epoch from the validation data request on: the interrupted end runs first.
            self.run_state.resume = finish_epoch_end(self, saved)
        # Lightning requests the validation data at train start only if the first epoch validates; otherwise
        # at the first validation (until then the progress bar counts no validation batches).
        trains = num_batches != 0 and not (self.done() and not inside_epoch(self.run_state.resume))
        if trains and self._validates(self.state.current_epoch) and not self.run_state.num_val_batches:
            self._val_data_ready()
        self._train(num_batches)

    def _restarting(self) -> bool:
        """Lightning's `restarting` after a checkpoint restore, when it skips the sanity check: the checkpoint was
        taken inside an epoch, or the fit counts steps (`max_steps` set)."""
        if self.run_state.ckpt_path is None:
            return False
        saved = self.run_state.resume
        inside = saved is not None and (saved["phase"] in ("batch_end", "validation")
                                        or saved["phase"] == "between_batches" and saved["batches_done"] > 0)
        return inside or self.max_steps != -1

    def _sanity_check(self) -> None:
        """Run a few validation batches before training so a broken `validation_step` fails fast."""
        self.state.stage = RunningStage.SANITY_CHECKING
        self.hooks.on_sanity_check_start()
        self.val_loop.setup_data()
        if self._validates(self.state.current_epoch):  # Lightning counts a reload only for an epoch that validates
            self.val_loop.last_reload_epoch = self.state.current_epoch
        steps = self.config.num_sanity_val_steps
        self.run_state.num_sanity_val_batches = [min(steps, count) for count in self.val_loop.num_batches]
        self.val_loop.run(self.run_state.num_sanity_val_batches, sanity_checking=True)
        self.hooks.on_sanity_check_end()
        self.metrics.clear()  # nothing logged while sanity checking survives it
        self.state.stage = RunningStage.TRAINING

    def _validation_enabled(self) -> bool:
        if self.config.limit_val_batches == 0:
            return False
        has_step = self.hooks.module_defines("validation_step")
        has_data = self.data.has_source("validate")
        if has_step and not has_data:
            rank_zero_warn("You defined a `validation_step` but have no `val_dataloader`. Skipping val loop. Define "
                           "`val_dataloader()` or pass `val_dataloaders=` to fit to validate.",
                           category=PossibleUserWarning)  # Lightning's words, then the fix
        elif has_data and not has_step:
            rank_zero_warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop. Define "
                           "`validation_step` to validate.")
        return has_step and has_data

    def _train(self, num_batches: int | float) -> None:
        state, hooks, metrics, optimization = self.state, self.hooks, self.metrics, self.optimization
        automatic = self.automatic = self.run_state.module.automatic_optimization
        # One function per run for a batch's optimization; with a profiler it is timed as Lightning's
        # "run_training_batch" (chosen here, so a run without one does no per-step check).
        run_batch = self._automatic_step if automatic else self._manual_step
        profiler = hooks.active_profiler
        epoch_timer = _NoTimer if profiler is None else profiler.profile
        if profiler is not None:
            run_batch = profiled(profiler, "run_training_batch", run_batch)
            self._backward = profiled(profiler, strategy_action(self.strategy, "backward"), optimization.backward)
        precision = self.strategy.precision_plugin
        signal_stop = self.signal_stop
        saved = self.run_state.resume
        # A checkpoint taken inside an epoch resumes that epoch even if the run was about to stop.
        if num_batches == 0 or (self.done() and not inside_epoch(saved)):
            if num_batches == 0:
                why = "`limit_train_batches=0`" if self.config.limit_train_batches == 0 else "the dataloader is empty"
                rank_zero_info(f"`Trainer.fit` stopped: no training batches ({why}).")
            return
        self._set_val_check_batch(num_batches)

        metrics.start_train_epoch()  # values logged in on_train_start count towards the first epoch
        self._epoch_results_open = True
        hooks.on_train_start()
        # From a checkpoint, resume.py finishes what was interrupted and hands over the rest of its epoch.
        batches = self._next_epoch() if saved is None else resume_epoch(self, saved)
        while batches is not None:
            with epoch_timer("run_training_epoch"):  # per epoch, not per step
                for batch_idx, batch, is_last in batches:
                    self.run_state.is_last_batch = is_last
                    batch = hooks.transfer_batch(precision.convert_input(batch), 0)
                    metrics.train_results.on_batch(batch)
                    if hooks.on_train_batch_start(batch, batch_idx) == -1:
                        break  # the module asked to skip the rest of this epoch
                    accumulating = self.accumulating(batch_idx, is_last)

                    # forward + backward (+ optimizer step unless accumulating)
                    outputs = run_batch(batch, batch_idx, accumulating, optimization)

                    if not accumulating:
                        self.step_schedulers("step", batch_idx)
                    if is_last:
                        self.epoch_finished = True
                        # Lightning steps interval="epoch" schedulers inside the last batch, before on_train_batch_end.
                        self.step_schedulers("epoch", batch_idx)
                    # A checkpoint taken from here on resumes by replaying the rest of this batch.
                    self.phase, self.batches_done = "batch_end", batch_idx + 1
                    hooks.on_train_batch_end(outputs, batch, batch_idx)
                    metrics.train_step_done(state.batches_that_stepped, accumulating)
                    self.finish_batch(batch_idx, is_last, accumulating, validate=True)
                    if not accumulating and signal_stop.agreed():
                        signal_stop.save_and_stop()
                        self.min_epochs = self.min_steps = 0  # the signal overrides min_epochs/min_steps
                    if self.stop_due():
                        break
            self._end_epoch()
            batches = self._next_epoch()
        hooks.on_train_end()

    def _next_epoch(self) -> Batches | None:
        """The next epoch's batches, once its start hooks ran; None when fit is done."""
        if self.done():
            return None
        return self.open_epoch(*self.start_epoch())

    def start_epoch(self) -> tuple[Any, int | float, list[Any]]:
        """Reload the training data if due and tell the sampler the epoch; the loader, its batch count, generators."""
        epoch = self.state.current_epoch
        if self._reload_due(epoch):
            train_loader, num_batches = self.data.train_loader(reload=True)
            self._set_val_check_batch(num_batches)
        else:
            train_loader, num_batches = self.data.train_loader()
        set_sampler_epoch(train_loader, epoch)
        return train_loader, num_batches, data_generators(train_loader)

    def open_epoch(self, train_loader: Any, num_batches: int | float, generators: list[Any]) -> Batches:
        """Start an epoch from its first batch: remember the RNG it starts from, `on_train_epoch_start`."""
        self.epoch_start_rng = capture_rng_states(generators)
        if not self._epoch_results_open:
            self.metrics.start_train_epoch()
            self._epoch_results_open = True
        self.hooks.on_train_epoch_start()
        self.epoch_finished = False
        self.batches_done = 0
        return iterate_batches(profiled_batches(train_loader, self.hooks.active_profiler, TRAIN_NEXT), num_batches)

    def accumulating(self, batch_idx: int, is_last: bool) -> bool:
        """Whether this batch only accumulates gradients (no optimizer step)."""
        # Lightning steps on the epoch's last batch even when its accumulation window is incomplete.
        return self.automatic and not ((batch_idx + 1) % self.accumulate == 0 or is_last)

    def finish_batch(self, batch_idx: int, is_last: bool, accumulating: bool, validate: bool) -> None:
        """After on_train_batch_end: validation if due, plateau schedulers, counters."""
        due = validate and self.validation_due(batch_idx, is_last)
        if due:
            self.state.stage = RunningStage.VALIDATING  # already during on_validation_model_zero_grad (Lightning)
            if not accumulating:
                self.hooks.on_validation_model_zero_grad()
            due = self._val_data_ready()  # the first validation requests the data (after the hook, as Lightning)
            if not due:  # its data has no batch: nothing runs
                self.state.stage = RunningStage.TRAINING
        if due:
            self.phase = "validation"
            # Validation at the epoch's end runs here, inside the last batch: before on_train_epoch_end (Lightning).
            self.val_loop.run_in_fit()
            self._last_val_time = time.monotonic()  # a time-based interval counts from the last validation's end
            self.metrics.activate(self.metrics.train_results)
        # Plateau schedulers step after validation, so they can monitor what it logged.
        self.step_schedulers("step", batch_idx, plateau=True, skip=accumulating)
        if not accumulating:
            self.state.batches_that_stepped += 1
        self.total_batch_idx += 1
        self.phase = "between_batches"

    def _end_epoch(self) -> None:
        """Epoch end: validation already ran (in the last batch), so on_train_epoch_end sees its metrics."""
        self.phase = "epoch_end"
        self.metrics.train_epoch_end_reached()
        self.hooks.on_train_epoch_end()
        self.close_epoch()

    def close_epoch(self) -> None:
        """After on_train_epoch_end: epoch plateau schedulers, epoch logging, the next epoch's number."""
        self.step_schedulers("epoch", self._batch_idx, plateau=True, skip=not self.epoch_finished)
        # Lightning logs epoch values at the step of the epoch's last batch, one below batches_that_stepped.
        self.metrics.train_epoch_done(self.state.batches_that_stepped - 1)
        self.state.current_epoch += 1
        self.phase, self.batches_done = "between_batches", 0
        self._epoch_results_open = False

    def resume_state(self) -> dict[str, Any]:
        """Where the loop is, for a checkpoint that must resume exactly here (read by `loops/resume.py`)."""
        callback_metrics = {key: value.detach().cpu() for key, value in self.metrics.callback_metrics.items()
                            if isinstance(value, torch.Tensor)}
        # The epoch-start RNG only matters to re-create a partly trained epoch's order.
        mid_epoch = self.batches_done > 0 and self.phase != "epoch_end"
        return {"phase": self.phase, "batches_done": self.batches_done, "epoch_finished": self.epoch_finished,
                "total_batch_idx": self.total_batch_idx, "epoch_start_rng": self.epoch_start_rng if mid_epoch else {},
                "rng": capture_rng_states(data_generators(self.run_state.train_loader)),
                "callback_metrics": callback_metrics}

    # -- one batch ----------------------------------------------------------------------------------

    def _automatic_step(self, batch: Any, batch_idx: int, accumulating: bool, optimization: Any) -> dict:
        self._batch, self._batch_idx = batch, batch_idx
        # Lightning zeroes gradients only on the first batch of each accumulation window.
        self._zero_grad_due = batch_idx % self.accumulate == 0 and not self.skip_backward
        self._step_output = {}
        if accumulating:
            with self.strategy.accumulation_context(True):  # DDP: no gradient all-reduce yet
                self._closure()
        else:
            # `optimizer_step` is a user hook; its default calls `optimizer.step(closure)`, and LBFGS
            # may call the closure several times, which is why forward+backward live in a closure.
            self.hooks.optimizer_step(self.state.current_epoch, batch_idx, optimization.wrapped_optimizers[0],
                                      self._closure)
            self.state.optimizer_stepped()
        return self._step_output

    def _forward_backward(self) -> torch.Tensor | None:
        if not torch.is_grad_enabled():
            # Lightning runs the closure under `enable_grad`: an optimizer whose `step` is `@torch.no_grad()`
            # (some third-party AdamW) must not turn training_step's autograd off.
            with torch.enable_grad():
                return self._forward_backward()
        hooks = self.hooks
        output = hooks.training_step(self._batch, self._batch_idx)
        loss, extra = split_training_output(output)
        if loss is not None and self.accumulate > 1:
            loss = loss / self.accumulate  # Lightning scales by the full window, also in an incomplete last one
        if self._zero_grad_due:
            # Lightning zeroes after training_step, right before backward (inside the closure).
            optimizer = self.optimization.optimizers[0]
            hooks.on_before_zero_grad(optimizer)
            hooks.optimizer_zero_grad(self.state.current_epoch, self._batch_idx, optimizer)
        if loss is None:
            rank_zero_warn("`training_step` returned None: this batch is skipped (no backward). If that was "
                           "not intended, return the loss.")
            self._step_output = {}
            return None
        if not self.skip_backward:
            self._backward(loss)
        self._step_output = {"loss": loss.detach(), **extra} if extra else {"loss": loss.detach()}
        return loss

    def _manual_step(self, batch: Any, batch_idx: int, *_: Any) -> dict:
        return manual_step_output(self.hooks.training_step(batch, batch_idx))

@contextmanager
def _NoTimer(_action: str) -> Iterator[None]:
    yield
