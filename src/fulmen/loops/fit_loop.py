"""FitLoop: epochs → batches → forward/backward → optimizer and scheduler steps → validation checks.

Owns: *when* everything in `fit` happens after the sanity check, read top to bottom. What happens
is delegated: hooks to `HookDispatch`, devices to the Strategy, values to the MetricsRouter.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from fulmen.loops.batch_iterator import data_generators, iterate_batches, set_sampler_epoch
from fulmen.loops.evaluation_loop import EvaluationLoop
from fulmen.optimization.scheduler_stepping import step_schedulers
from fulmen.trainer.signals import save_and_stop, stop_agreed
from fulmen.trainer.state import RunningStage
from fulmen.utilities.apply_func import apply_to_collection
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn
from fulmen.utilities.seed import capture_rng_states, isolate_rng, restore_rng_states
from fulmen.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from fulmen.trainer.run import Run
    from fulmen.trainer.trainer import Trainer


class FitLoop:
    """Runs training epochs with periodic validation until a stopping condition holds."""

    def __init__(self, trainer: Trainer, run: Run, val_loop: EvaluationLoop) -> None:
        self.trainer = trainer
        self.run_state = run
        self.val_loop = val_loop
        config = trainer._config
        self.max_epochs = config.resolved_max_epochs()
        # With only `min_steps`, Lightning still finishes the first epoch before honouring `should_stop`.
        self.min_epochs = config.min_epochs if config.min_epochs is not None else (1 if config.min_steps else 0)
        self.max_steps = config.max_steps
        self.min_steps = config.min_steps or 0
        self.accumulate = config.accumulate_grad_batches
        # The closure is bound once: per step it only reads the current batch from `self`.
        self._closure = self._forward_backward_with_grad
        self._batch: Any = None
        self._batch_idx = 0
        self._zero_grad_due = True
        self._step_output: dict[str, Any] = {}
        self.total_batch_idx = 0
        # Where the loop is, so a checkpoint taken at any hook can resume exactly (see resume_state).
        self.phase = "between_batches"
        self.batches_done = 0
        self.epoch_finished = False
        self.epoch_start_rng: dict[str, Any] = {}
        self.resume_from: dict[str, Any] | None = run.resume
        self.signal_state: dict[str, Any] | None = None  # the loop state when a signal stopped training

    # -- stopping -------------------------------------------------------------------------------------

    def _can_stop_early(self) -> bool:
        state = self.trainer._state
        return state.current_epoch >= self.min_epochs and state.global_step >= self.min_steps

    def _max_steps_reached(self) -> bool:
        return self.max_steps != -1 and self.trainer._state.global_step >= self.max_steps

    def done(self) -> bool:
        state = self.trainer._state
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
        trainer = self.trainer
        self.val_loop.enabled = self._validation_enabled()
        if self.val_loop.enabled and trainer._config.num_sanity_val_steps > 0:
            with isolate_rng():  # the sanity check must not change the data order or dropout of training
                self._sanity_check()
        train_loader, num_batches = trainer._data.train_loader()
        if self.val_loop.enabled and not self.val_loop.loaders:
            self.val_loop.setup_data()
        if self.val_loop.enabled:
            # Lightning's counts once validation data is set up, whether or not a sanity check or a
            # validation ever runs: full batch counts, and the sanity share of them (0 when skipped).
            steps = trainer._config.num_sanity_val_steps
            self.run_state.num_sanity_val_batches = [min(steps, count) for count in self.val_loop.num_batches]
            self.run_state.num_val_batches = list(self.val_loop.num_batches)
        if self.val_loop.enabled and not any(self.val_loop.num_batches):
            self.val_loop.enabled = False
        self._train(train_loader, num_batches)

    def _sanity_check(self) -> None:
        """Run a few validation batches before training so a broken `validation_step` fails fast."""
        trainer = self.trainer
        trainer._state.stage = RunningStage.SANITY_CHECKING
        trainer._hooks.on_sanity_check_start()
        self.val_loop.setup_data()
        steps = trainer._config.num_sanity_val_steps
        self.run_state.num_sanity_val_batches = [min(steps, count) for count in self.val_loop.num_batches]
        self.val_loop.run(self.run_state.num_sanity_val_batches, sanity_checking=True)
        trainer._hooks.on_sanity_check_end()
        trainer._metrics.clear()  # nothing logged while sanity checking survives it
        trainer._state.stage = RunningStage.TRAINING

    def _validation_enabled(self) -> bool:
        trainer = self.trainer
        if trainer._config.limit_val_batches == 0:
            return False
        has_step = trainer._hooks.module_defines("validation_step")
        has_data = trainer._data.has_source("validate")
        if has_step and not has_data:
            rank_zero_warn("The module defines `validation_step` but there is no validation data; validation "
                           "is skipped. Define `val_dataloader()` or pass `val_dataloaders=` to fit.",
                           category=PossibleUserWarning)
        elif has_data and not has_step:
            rank_zero_warn("Validation data was given but the module has no `validation_step`; validation is "
                           "skipped. Define `validation_step` to validate.")
        return has_step and has_data

    def _train(self, train_loader: Any, num_batches: int | float) -> None:
        trainer = self.trainer
        state, hooks, metrics, config = trainer._state, trainer._hooks, trainer._metrics, trainer._config
        optimization = trainer._optimization
        automatic = trainer.lightning_module.automatic_optimization
        precision = trainer.strategy.precision_plugin
        deadline = None if config.max_time is None else time.monotonic() + config.max_time.total_seconds()
        if deadline is not None and time.monotonic() >= deadline:
            state.should_stop = True  # a time budget already spent (e.g. max_time=0) trains nothing
        # A checkpoint taken inside an epoch resumes that epoch even if the run was about to stop.
        finishing_epoch = self.resume_from is not None and self.resume_from["phase"] != "between_batches"
        if num_batches == 0 or (self.done() and not finishing_epoch):
            if num_batches == 0:
                rank_zero_info("`Trainer.fit` stopped: no training batches (`limit_train_batches=0`).")
            return
        self._set_val_check_batch(num_batches)

        metrics.start_train_epoch()  # values logged in on_train_start count towards the first epoch
        hooks.on_train_start()
        first_epoch = True
        resume, self.resume_from = self.resume_from, None
        if resume is not None and resume["phase"] == "epoch_end":
            # The checkpoint was taken while the epoch was ending: finish that epoch, then go on.
            self._end_epoch(resume["epoch_finished"], resume)
            first_epoch = False
            resume = {**resume, "batches_done": 0}  # the next epoch starts fresh from the saved RNG
        while (resume is not None and resume["batches_done"] > 0) or not self.done():
            epoch = state.current_epoch
            if self._reload_due(epoch):
                train_loader, num_batches = trainer._data.train_loader(reload=True)
                self._set_val_check_batch(num_batches)
            set_sampler_epoch(train_loader, epoch)
            generators = data_generators(train_loader)
            mid_epoch = resume is not None and resume["batches_done"] > 0
            if mid_epoch:
                # Same order as the interrupted epoch: the RNG as it was when the epoch began, then skip.
                restore_rng_states(resume["epoch_start_rng"], generators)
                self.epoch_start_rng = resume["epoch_start_rng"]
            else:
                if resume is not None:
                    restore_rng_states(resume["rng"], generators)
                self.epoch_start_rng = capture_rng_states(generators)
            if not first_epoch:
                metrics.start_train_epoch()
            first_epoch = False
            if not mid_epoch:
                hooks.on_train_epoch_start()
            self.epoch_finished = False
            self.batches_done = start = resume["batches_done"] if mid_epoch else 0
            after_skip = functools.partial(self._resume_mid_epoch, resume, generators, num_batches) \
                if mid_epoch else None
            batches = iterate_batches(train_loader, num_batches, start=start, after_skip=after_skip)
            resume = None

            for batch_idx, batch, is_last in batches:
                self.run_state.is_last_batch = is_last
                batch = hooks.transfer_batch(precision.convert_input(batch), 0)
                metrics.train_results.on_batch(batch)
                if hooks.on_train_batch_start(batch, batch_idx) == -1:
                    break  # the module asked to skip the rest of this epoch
                accumulating = automatic and not ((batch_idx + 1) % self.accumulate == 0 or is_last)

                # forward + backward (+ optimizer step unless accumulating)
                if automatic:
                    outputs = self._automatic_step(batch, batch_idx, accumulating, optimization)
                else:
                    outputs = self._manual_step(batch, batch_idx)

                if not accumulating:
                    step_schedulers(optimization.automatic_schedulers, hooks, metrics, "step", batch_idx + 1)
                if is_last:
                    self.epoch_finished = True
                    step_schedulers(optimization.automatic_schedulers, hooks, metrics, "epoch", state.current_epoch + 1)
                # A checkpoint taken from here on resumes by replaying the rest of this batch.
                self.phase, self.batches_done = "batch_end", batch_idx + 1
                hooks.on_train_batch_end(outputs, batch, batch_idx)
                metrics.train_step_done(state.batches_that_stepped, accumulating)
                if deadline is not None and time.monotonic() >= deadline:
                    rank_zero_info("`Trainer.fit` stopped: `max_time` reached.")
                    state.should_stop = True
                self._finish_batch(batch_idx, is_last, accumulating, validate=True)
                if not accumulating and stop_agreed(trainer):
                    save_and_stop(trainer)
                    self.min_epochs = self.min_steps = 0  # the signal overrides min_epochs/min_steps
                if self._max_steps_reached() or (state.should_stop and self._can_stop_early()):
                    break

            self._end_epoch(self.epoch_finished)
        hooks.on_train_end()

    def _finish_batch(self, batch_idx: int, is_last: bool, accumulating: bool, validate: bool) -> None:
        """After on_train_batch_end: validation if due, plateau schedulers, counters."""
        trainer = self.trainer
        if validate and self._should_validate(batch_idx, is_last):
            if not accumulating:
                trainer._hooks.on_validation_model_zero_grad()
            self.phase = "validation"
            self.val_loop.run_in_fit()
            trainer._metrics.activate(trainer._metrics.train_results)
        if not accumulating:
            step_schedulers(trainer._optimization.automatic_schedulers, trainer._hooks, trainer._metrics, "step",
                            batch_idx + 1, plateau=True)
        if not accumulating:
            trainer._state.batches_that_stepped += 1
        self.total_batch_idx += 1
        self.phase = "between_batches"

    def _end_epoch(self, epoch_finished: bool, resume: dict[str, Any] | None = None) -> None:
        """Epoch end: validation already ran (before on_train_epoch_end), then plateau schedulers and logging."""
        trainer = self.trainer
        state, metrics = trainer._state, trainer._metrics
        self.phase = "epoch_end"
        self.epoch_finished = epoch_finished
        metrics.train_epoch_end_reached()
        if resume is None:
            trainer._hooks.on_train_epoch_end()
        else:
            trainer.callback_metrics.update(resume["callback_metrics"])  # what the plateau scheduler reads
            restore_rng_states(resume["rng"], [])
        if epoch_finished:
            step_schedulers(trainer._optimization.automatic_schedulers, trainer._hooks, metrics, "epoch",
                            state.current_epoch + 1, plateau=True)
        metrics.train_epoch_done(state.batches_that_stepped - 1)
        state.current_epoch += 1
        self.phase, self.batches_done = "between_batches", 0

    def _resume_mid_epoch(self, resume: dict[str, Any], generators: list[Any], num_batches: int | float) -> bool:
        """After skipping the batches already trained: put the RNG back as saved and finish the saved batch."""
        trainer = self.trainer
        restore_rng_states(resume["rng"], generators)
        self.total_batch_idx = resume["total_batch_idx"]
        last_idx = resume["batches_done"] - 1
        is_last = resume["batches_done"] >= num_batches
        self.epoch_finished = is_last
        if resume["phase"] in ("batch_end", "validation"):
            automatic = trainer.lightning_module.automatic_optimization
            accumulating = automatic and not ((last_idx + 1) % self.accumulate == 0 or is_last)
            self._finish_batch(last_idx, is_last, accumulating, validate=resume["phase"] == "batch_end")
        state = trainer._state
        return self._max_steps_reached() or (state.should_stop and self._can_stop_early())

    def resume_state(self) -> dict[str, Any]:
        """Where the loop is, for a checkpoint that must resume exactly here."""
        trainer = self.trainer
        callback_metrics = {key: value.detach().cpu() for key, value in trainer.callback_metrics.items()
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
        self._zero_grad_due = batch_idx % self.accumulate == 0
        self._step_output = {}
        if accumulating:
            with self.trainer.strategy.accumulation_context(True):  # DDP: no gradient all-reduce yet
                self._closure()
        else:
            # `optimizer_step` is a user hook; its default calls `optimizer.step(closure)`, and LBFGS
            # may call the closure several times, which is why forward+backward live in a closure.
            trainer = self.trainer
            trainer._hooks.optimizer_step(trainer._state.current_epoch, batch_idx,
                                          optimization.wrapped_optimizers[0], self._closure)
            trainer._state.optimizer_stepped()
        return self._step_output

    def _forward_backward_with_grad(self) -> torch.Tensor | None:
        # Lightning runs the closure under `enable_grad`: an optimizer whose `step` is `@torch.no_grad()`
        # (some third-party AdamW) must not turn training_step's autograd off.
        if torch.is_grad_enabled():
            return self._forward_backward()
        with torch.enable_grad():
            return self._forward_backward()

    def _forward_backward(self) -> torch.Tensor | None:
        trainer = self.trainer
        hooks = trainer._hooks
        output = hooks.training_step(self._batch, self._batch_idx)
        loss, extra = _split_training_output(output)
        if loss is not None and self.accumulate > 1:
            loss = loss / self.accumulate
        if self._zero_grad_due:
            optimizer = trainer._optimization.optimizers[0]
            hooks.on_before_zero_grad(optimizer)
            hooks.optimizer_zero_grad(trainer._state.current_epoch, self._batch_idx, optimizer)
        if loss is None:
            rank_zero_warn("`training_step` returned None: this batch is skipped (no backward). If that was "
                           "not intended, return the loss.")
            self._step_output = {}
            return None
        trainer._optimization.backward(loss)
        self._step_output = {"loss": loss.detach(), **extra} if extra else {"loss": loss.detach()}
        return loss

    def _manual_step(self, batch: Any, batch_idx: int) -> dict:
        output = self.trainer._hooks.training_step(batch, batch_idx)
        if output is None:
            return {}
        if isinstance(output, torch.Tensor):
            return {"loss": output.detach()}
        if isinstance(output, Mapping):
            return apply_to_collection(dict(output), torch.Tensor, torch.Tensor.detach)
        raise MisconfigurationException(
            f"`training_step` returned {type(output).__name__}; with manual optimization return None, a tensor, "
            "or a dict."
        )

    # -- validation and schedulers --------------------------------------------------------------------

    def _set_val_check_batch(self, num_batches: int | float) -> None:
        config = self.trainer._config
        interval = config.val_check_interval
        if isinstance(interval, int):
            if interval > num_batches and config.check_val_every_n_epoch is not None:
                raise ValueError(
                    f"`val_check_interval={interval}` is more than the {num_batches} training batches per epoch, "
                    "so validation would never run. Use an interval <= the number of batches, a float fraction, "
                    "`check_val_every_n_epoch=None` to count batches across epochs, or `limit_val_batches=0` "
                    "to turn validation off."
                )
            self.val_check_batch: int | float = interval
        elif num_batches == float("inf"):
            if interval != 1.0:
                raise MisconfigurationException(
                    f"`val_check_interval={interval}` is a fraction of the epoch, but the training dataloader has "
                    "no length; pass an int number of batches instead."
                )
            self.val_check_batch = float("inf")
        else:
            self.val_check_batch = max(1, int(num_batches * interval))

    def _should_validate(self, batch_idx: int, is_last: bool) -> bool:
        trainer = self.trainer
        if not self.val_loop.enabled:
            return False
        every = trainer._config.check_val_every_n_epoch
        if every is not None and (trainer._state.current_epoch + 1) % every != 0:
            return False
        if trainer._state.should_stop and self._can_stop_early():
            return True
        if self.val_check_batch == float("inf"):
            return is_last
        current = self.total_batch_idx if every is None else batch_idx
        return (current + 1) % self.val_check_batch == 0

    def _reload_due(self, epoch: int) -> bool:
        every = self.trainer._config.reload_dataloaders_every_n_epochs
        return bool(every) and epoch > 0 and epoch % every == 0


def _checked_loss(loss: Any) -> torch.Tensor:
    """The loss `training_step` returned, if backward can run on it (attribute checks only: no per-step cost)."""
    if not isinstance(loss, torch.Tensor):
        raise MisconfigurationException(
            f"`training_step` returned a loss of type {type(loss).__name__}; return a tensor computed from the "
            "model's output (not a Python number or `loss.item()`), so backward can reach the parameters.")
    if not loss.requires_grad:
        raise MisconfigurationException(
            "`training_step` returned a loss that does not require grad, so backward cannot train anything: it "
            "was detached (`.detach()`, `.item()`, `torch.no_grad()`), or no parameter it depends on requires grad "
            "(all frozen). Return the loss computed from the model's output, with grad.")
    if loss.ndim and loss.numel() != 1:
        raise MisconfigurationException(
            f"`training_step` returned a loss of shape {tuple(loss.shape)}; the loss must be a scalar. Reduce it, "
            "e.g. `loss.mean()` or a loss function with `reduction='mean'`.")
    return loss


def _split_training_output(output: Any) -> tuple[torch.Tensor | None, dict[str, Any]]:
    if output is None:
        return None, {}
    if isinstance(output, torch.Tensor):
        return _checked_loss(output), {}
    if isinstance(output, Mapping):
        if "loss" not in output:
            raise MisconfigurationException(
                f"`training_step` returned a dict without a 'loss' key (keys: {sorted(output)}); with automatic "
                "optimization the dict must hold the loss under 'loss'."
            )
        # Like Lightning, only the loss is detached for `on_train_batch_end`; other entries pass as returned.
        return _checked_loss(output["loss"]), {key: value for key, value in output.items() if key != "loss"}
    raise MisconfigurationException(
        f"`training_step` returned {type(output).__name__}; return the loss tensor, a dict with a 'loss' key, "
        "or None to skip the batch."
    )
