"""Non-finite guard: `Trainer(on_nonfinite="warn"|"raise"|"skip"|"stop")` reports, and acts on, NaN/inf values.

"warn" (the default) costs nothing per step: it looks only at numbers fulmen turns into Python floats anyway (the
progress bar's values, what goes to the loggers, the results `validate`/`test` return), and warns once per key.

The strict modes check every optimizer step, once its closure (forward and backward) has run and before anything
touches the gradients (`on_before_optimizer_step`, clipping, the update): the loss and every gradient of the
optimizer are summed into one number (one foreach norm kernel) read with one device sync, after one all-reduce
with several processes, so every rank makes the same decision. Only when that number is not finite are the
values looked at one by one, for the offending names (and to clear a sum that merely overflowed).

- "raise": `NonFiniteError` (a `FloatingPointError`); the run's `on_exception` hooks run as for any error.
- "skip": the update is not made (nor `on_before_optimizer_step` and clipping): the optimizer's gradients are
  zeroed and `optimizer.step()` returns None.
  `global_step` still counts the step, as it counts a step a GradScaler skips, so `max_steps`, validation
  intervals, step-wise LR schedulers and logging keep following the batches; `skipped_steps` counts them.
- "stop": as "skip", then a resumable checkpoint of the state before the bad step is saved in the checkpoint
  directory and training stops (`trainer.should_stop`, overriding `min_epochs`/`min_steps`). Resuming from it
  trains the offending batch again, from the same weights, optimizer state and data position.

With `accumulate_grad_batches`, the check runs at the window's optimizer step: its gradients hold the whole
window, the loss is its last batch's; "skip" drops the whole window.
With `precision="16-mixed"` an inf/NaN gradient behind a finite loss is the GradScaler's normal calibration (it
skips that step and lowers its scale), so the strict modes leave gradients to the scaler and check the loss only.
Under manual optimization each `optimizer.step()` is checked: the closure's result when it returns a tensor, and
the optimizer's gradients (from `manual_backward`). An LBFGS step evaluates its closure several times and moves
the weights between evaluations; a bad later evaluation skips the rest of that step only.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable

import torch

from fulmen.optimization.lightning_optimizer import do_nothing_closure

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

MODES = ("warn", "raise", "skip", "stop")


class NonFiniteError(FloatingPointError):
    """A NaN/inf loss or gradient was found at an optimizer step under `Trainer(on_nonfinite="raise")`."""


class NonFiniteWarning(UserWarning):
    """A NaN/inf value was seen (filter it like any warning: `warnings.filterwarnings("ignore", category=...)`)."""


class _SkipStep(Exception):
    """Raised inside the optimizer's closure to abandon its step before any update; caught by the guarded step."""


def check_mode(mode: Any) -> str:
    """`mode` if it is one of `MODES`, else a clear error."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"`Trainer(on_nonfinite={mode!r})` is not valid; use one of {', '.join(map(repr, MODES))} "
                         "('warn', the default, reports NaN/inf values fulmen reads anyway; the others check every "
                         "optimizer step).")
    return mode


class NonFiniteGuard:
    """The Trainer's guard (`trainer.nonfinite_guard`): the mode, what it reported and how many steps it skipped.

    Args:
        mode: one of `MODES` (see the module's docstring).
    """

    def __init__(self, mode: str = "warn") -> None:
        self.mode = check_mode(mode)
        self.strict = mode != "warn"
        self.skipped_steps = 0  # steps "skip"/"stop" did not take, over the Trainer's life
        self.reports: list[str] = []  # every report this guard issued (warned or raised), oldest first
        self.checkpoint_path: str | None = None  # where "stop" saved its checkpoint
        self._reported: set[str] = set()
        self._trainer: Trainer | None = None
        self._closure: Callable[[], Any] = do_nothing_closure
        self._optimizer: Any = None
        self._check_grads = True

    # -- wiring (once per Trainer, and once per fit) --------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Read the values `trainer` materialises; in a strict mode, guard every optimizer step of its fits."""
        self._trainer = trainer
        trainer._metrics.check_numbers = self.check_numbers
        if self.strict:
            trainer._optimization.step_guard = self

    def guard_steps(self, wrappers: list[Any]) -> None:
        """Route each wrapped optimizer's step through the check (at each fit's optimizer setup)."""
        precision = self._trainer.strategy.precision_plugin if self._trainer is not None else None
        self._check_grads = getattr(precision, "scaler", None) is None  # a GradScaler handles inf gradients itself
        for wrapper in wrappers:
            # Each wrapper has a class of its own (see LightningOptimizer), so only this run's wrappers change.
            type(wrapper)._strategy_step = staticmethod(
                self._guarded(wrapper._strategy_step, wrapper.optimizer, wrapper._on_stepped))

    def _guarded(self, step: Callable[..., Any], optimizer: Any, on_stepped: Callable[[], None] | None
                 ) -> Callable[..., Any]:
        def guarded_step(closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
            self._closure, self._optimizer = closure or do_nothing_closure, optimizer
            try:
                return step(self._checked_closure, **kwargs)
            except _SkipStep:
                if on_stepped is not None:
                    on_stepped()  # manual optimization counts a skipped step too, as the automatic loop does
                return None

        return guarded_step

    # -- strict modes: every optimizer step -------------------------------------------------------------

    def _checked_closure(self) -> Any:
        result = self._closure()
        optimizer = self._optimizer
        loss = result.detach() if isinstance(result, torch.Tensor) else None
        grads = [param.grad for group in optimizer.param_groups for param in group["params"]
                 if param.grad is not None] if self._check_grads else []
        strategy = self._trainer.strategy
        distributed = strategy.world_size > 1
        # One number that is finite when everything is: the sum of the gradients' L2 norms (in float32, so
        # half-precision gradients cannot overflow it) and the loss. NaN/inf anywhere makes it non-finite; a
        # finite sum that overflows is told apart below, only then.
        parts = list(torch._foreach_norm(grads, 2, dtype=torch.float32)) if grads else []
        if loss is not None:
            parts.append(loss if loss.dim() == 0 and loss.dtype == torch.float32 else loss.float().sum())
        if parts:
            total = torch.stack(parts).sum() if len(parts) > 1 else parts[0]
        elif distributed:
            total = torch.zeros((), device=strategy.root_device)  # nothing here, but the ranks decide together
        else:
            return result
        if distributed:
            total = strategy.reduce(total, reduce_op="sum")  # non-finite on one rank: non-finite on all
        if math.isfinite(total.item()):  # the one sync per step
            return result
        self._act(loss, optimizer)
        return result

    def _act(self, loss: torch.Tensor | None, optimizer: Any) -> None:
        """The quick check failed: find what is non-finite (here, and on which ranks); act if anything is."""
        strategy = self._trainer.strategy
        local_bad = self._local_offenders(loss, optimizer)
        ranks = ""
        if strategy.world_size > 1:
            flags = strategy.all_gather(torch.tensor(float(bool(local_bad)), device=strategy.root_device))
            bad_ranks = [rank for rank, flag in enumerate(flags.reshape(-1).tolist()) if flag]
            if not bad_ranks:
                return  # only the sum overflowed: every value is finite
            ranks = f" on rank{'s' if len(bad_ranks) > 1 else ''} {', '.join(map(str, bad_ranks))}"
            if not local_bad:
                local_bad = f"values{ranks} (this is rank {strategy.global_rank})"
        elif not local_bad:
            return  # only the sum overflowed: every value is finite
        where = self._position()
        message = f"Non-finite {local_bad} at {where}{ranks}."
        values = self._step_values()
        if values:
            message += f" Logged values at this step: {_format(values)}."
            self._reported.update(values)  # reported here: not again when the loggers or the bar read them
        if self.mode == "raise":
            self._record(message)
            raise NonFiniteError(message + " (Trainer(on_nonfinite='raise'); use 'skip' to skip such steps or "
                                           "'stop' to save a checkpoint and stop.)")
        optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        if self.mode == "skip":
            kind = local_bad.split(" ", 1)[0]
            self._warn(message + " on_nonfinite='skip': the optimizer step was skipped (gradients zeroed; "
                       "`global_step` still counts it). Later skips are counted in "
                       "`trainer.nonfinite_guard.skipped_steps` without warning again.", kind=f"skip:{kind}")
            raise _SkipStep
        path = self._save_and_stop()
        self._warn(message + f" on_nonfinite='stop': the step was not taken; saved the last finite state to "
                   f"{path} and stopping. Resume with `trainer.fit(..., ckpt_path={path!r})` once fixed.",
                   kind="stop")
        raise _SkipStep

    def _local_offenders(self, loss: torch.Tensor | None, optimizer: Any) -> str:
        """What is non-finite on this process ('' when nothing): the loss, the first bad gradient by name."""
        parts = []
        if loss is not None and not bool(torch.isfinite(loss).all()):
            parts.append(f"loss ({_number(loss)})")
        if self._check_grads:
            own = {id(param) for group in optimizer.param_groups for param in group["params"]}
            bad, total = _bad_gradients(self._trainer.lightning_module, own)
            if bad:
                parts.append(f"gradients ({len(bad)} of {total} parameters; first {bad[0]!r})")
        return " and ".join(parts)

    def _save_and_stop(self) -> str:
        """Save a checkpoint of the state before this step (the loop's position: before this batch); stop."""
        trainer = self._trainer
        callback = trainer.checkpoint_callback
        directory = callback.dirpath if callback is not None and callback.dirpath else os.path.join(
            trainer.default_root_dir, "checkpoints")
        path = os.path.join(directory, f"nonfinite-epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt")
        loop = trainer.fit_loop
        checkpointing = trainer._checkpointing
        # Every checkpoint written from here on (e.g. `last.ckpt` at the epoch's end) resumes before this batch.
        checkpointing.freeze_loop_state(trainer._current)
        if loop.batches_done == 0 and loop.signal_state is not None:
            # Bad in an epoch's first batch: resume starts the epoch over, from the RNG it started with.
            loop.signal_state["rng"] = loop.epoch_start_rng
        trainer.save_checkpoint(path)
        self.checkpoint_path = path
        trainer.should_stop = True
        loop.min_epochs = loop.min_steps = 0  # a non-finite step overrides min_epochs/min_steps
        return path

    # -- "warn": values fulmen reads anyway -------------------------------------------------------------

    def check_numbers(self, numbers: dict[str, Any], source: str) -> None:
        """Warn (once per key) about NaN/inf among `numbers`, Python values just read from tensors for `source`."""
        for key, value in numbers.items():
            if isinstance(value, float) and not math.isfinite(value) and key not in self._reported:
                self._report_number(key, value, numbers, source)

    def _report_number(self, key: str, value: float, numbers: dict[str, Any], source: str) -> None:
        trainer = self._trainer
        message = f"Non-finite value {key!r} = {value} read for the {source} at {self._position()}."
        if trainer is not None and trainer.training and trainer.lightning_module is not None:
            # Looked up only now that something is wrong: which gradient / weight went bad first.
            module = trainer.lightning_module
            bad, total = _bad_gradients(module, None)
            if bad:
                message += f" Non-finite gradients in {len(bad)} of {total} parameters, first {bad[0]!r}."
            weights = [name for name, param in module.named_parameters() if not bool(torch.isfinite(param).all())]
            if weights:
                message += f" Non-finite weights in {len(weights)} parameters, first {weights[0]!r}."
        message += f" Values read with it: {_format(numbers)}."
        if trainer is not None and self.mode == "warn":
            message += (" Training goes on: pass `Trainer(on_nonfinite='raise'|'skip'|'stop')` to check every "
                        "optimizer step and act on the first bad one.")
        self._warn(message + f" (Reported once per key; {key!r} will not be reported again.)", kind=key)

    # -- shared -----------------------------------------------------------------------------------------

    def _position(self) -> str:
        trainer = self._trainer
        if trainer is None:
            return "an unknown step"
        loop = trainer.fit_loop if trainer.training else None
        if loop is None:
            return f"epoch {trainer.current_epoch} (global step {trainer.global_step})"
        # Inside a batch the loop is still "between batches" and `batches_done` is this batch's index.
        batch_idx = loop.batches_done - 1 if loop.phase in ("batch_end", "validation") else loop.batches_done
        return f"epoch {trainer.current_epoch}, batch {batch_idx} (global step {trainer.global_step})"

    def _step_values(self) -> dict[str, Any]:
        """This training step's logged values, as numbers (read only once something is wrong)."""
        results = self._trainer._metrics.train_results
        callback, logged, progress_bar = results.views(on_step=True)
        values = {**logged, **progress_bar} or callback
        return {key: value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
                for key, value in values.items()}

    def _warn(self, message: str, kind: str) -> None:
        """Warn about `message` unless this kind was already reported (every process warns: the bad one knows more)."""
        if kind in self._reported:
            return
        self._reported.add(kind)
        self._record(message)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            message = f"[rank {trainer.global_rank}] {message}"
        warnings.warn(message, NonFiniteWarning)

    def _record(self, message: str) -> None:
        self.reports.append(message)


def _bad_gradients(module: torch.nn.Module, own: set[int] | None) -> tuple[list[str], int]:
    """Names of the parameters (of `own` ids, or all) whose gradient holds NaN/inf, and how many have one."""
    bad, total = [], 0
    for name, param in module.named_parameters():
        if param.grad is None or (own is not None and id(param) not in own):
            continue
        total += 1
        if not bool(torch.isfinite(param.grad).all()):
            bad.append(name)
    return bad, total


def _number(tensor: torch.Tensor) -> str:
    return str(tensor.item()) if tensor.numel() == 1 else f"{int((~torch.isfinite(tensor)).sum())} non-finite values"


def _format(numbers: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{key!r}: {value:.6g}" if isinstance(value, float) else f"{key!r}: {value!r}"
                           for key, value in numbers.items()) + "}"
