"""Restoring a run from `ckpt_path`, in Lightning's two halves and at Lightning's points of the run.

1. Modules and callbacks: the module's `on_load_checkpoint`, then its weights; the datamodule's state; the callbacks'
   `on_load_checkpoint`, then their `load_state_dict`. Before the strategy's `setup` (so `configure_optimizers` sees
   the restored weights), or after it for strategies whose `restore_checkpoint_after_setup` is True (FSDP,
   ModelParallel: they load into the sharded module and its optimizers).
2. The training state: the precision plugin's state, the loop counters and, when fitting, optimizer and scheduler
   states. After `on_fit_start` (which, as in Lightning, still sees epoch 0 and step 0).

Weights loaded before `setup` are loaded again after it when `setup` changed a parameter's dtype (a precision such
as "64-true" converts the module there): a float64 checkpoint read into float32 parameters would lose bits
(Lightning loses them; fulmen resumes bit for bit).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fulmen.core.saving import load_weights
from fulmen.optimization.placeholder import PlaceholderOptimizer
from fulmen.trainer.checkpoint_checks import check_resumable, load_optimizer_states, load_scheduler_states
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.optimization.optimization import Optimization
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.trainer.run import Run
    from fulmen.trainer.state import TrainerState


class CheckpointRestore:
    """One run's restore from `path` (nothing to do when it is None): `around_setup()` around the strategy's
    `setup`, `finish()` after `on_fit_start`. `run.ckpt_path` (`trainer.ckpt_path`) is the path from the first half
    on, as in Lightning."""

    def __init__(self, state: TrainerState, hooks: HookDispatch, strategy: Strategy, optimization: Optimization,
                 run: Run, path: str | os.PathLike | None, weights_only: bool | None,
                 max_epochs: int | None = None) -> None:
        self._state, self._hooks, self._strategy, self._optimization = state, hooks, strategy, optimization
        self._run, self._max_epochs = run, max_epochs
        self._path = None if path is None else os.fspath(path)
        self._weights_only = weights_only
        self._checkpoint: dict[str, Any] | None = None

    @contextlib.contextmanager
    def around_setup(self) -> Iterator[None]:
        """Restore modules and callbacks before the block (the strategy's `setup`), unless the strategy restores
        them after it; after the block, load the weights again if it changed a parameter's dtype."""
        early = self._path is not None and not self._strategy.restore_checkpoint_after_setup
        if early:
            self._restore_modules_and_callbacks()
        dtypes = _dtypes(self._run.module) if early else None
        yield
        if early and dtypes != _dtypes(self._run.module):
            self._load_weights()  # `setup` converted the module: read the checkpoint's values at full precision

    def finish(self) -> None:
        """Restore what `around_setup` left, then the training state."""
        if self._path is None:
            return
        if self._checkpoint is None:
            self._restore_modules_and_callbacks()
        self._restore_training_state()
        self._checkpoint = None  # the run does not keep the checkpoint's tensors alive
        restored = "Restored all states" if self._run.fn == TrainerFn.FITTING else "Loaded model weights"
        rank_zero_info(f"{restored} from the checkpoint at {self._path}")  # Lightning's words

    # -- the halves ------------------------------------------------------------------------------------------------

    def _restore_modules_and_callbacks(self) -> None:
        run, path = self._run, self._path
        run.ckpt_path = path
        rank_zero_info(f"Restoring states from the checkpoint path at {path}")
        checkpoint = self._checkpoint = self._strategy.load_checkpoint(path, weights_only=self._weights_only)
        if run.fn == TrainerFn.FITTING:
            check_resumable(checkpoint, path)
        self._hooks.module_on_load_checkpoint(checkpoint)
        self._load_weights()
        datamodule = run.datamodule
        if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
            datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
        states = checkpoint.get("callbacks")
        missing = sorted(set(states) - {callback.state_key for callback in run.callbacks}) if states else []
        if missing:  # their state would be lost silently
            rank_zero_warn("Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be "
                           "provided during `Trainer` instantiation. Please add the following callbacks: "
                           f"{missing}.")  # Lightning's words
        self._hooks.callbacks_on_load_checkpoint(checkpoint)
        for callback in run.callbacks:
            state = checkpoint.get("callbacks", {}).get(callback.state_key)
            if state:
                callback.load_state_dict(state)

    def _load_weights(self) -> None:
        run, strategy, checkpoint = self._run, self._strategy, self._checkpoint
        strict = run.module.strict_loading
        if _strategy_overrides(strategy, "load_model_state_dict"):
            strategy.load_model_state_dict(checkpoint, strict=strict)
        else:  # the same load, with errors that name the file and the fix
            load_weights(run.module, checkpoint["state_dict"], strict, self._path,
                         "set `model.strict_loading = False` before calling the trainer")

    def _restore_training_state(self) -> None:
        run, strategy, checkpoint, path = self._run, self._strategy, self._checkpoint, self._path
        precision = strategy.precision_plugin
        precision.load_state_dict(checkpoint.get(type(precision).__name__, {}))
        precision.on_load_checkpoint(checkpoint)
        if run.fn != TrainerFn.FITTING:
            return
        loop_state = checkpoint.get("loops", {}).get("fit_loop")
        if loop_state and "current_epoch" not in loop_state:
            loop_state = _counters_from_lightning(checkpoint)
        if loop_state:
            self._state.load_state_dict(loop_state)
            # The fit loop picks this up to continue where the checkpoint was taken.
            run.resume = loop_state if "phase" in loop_state else None
        epoch, max_epochs = self._state.current_epoch, self._max_epochs
        if max_epochs is not None and max_epochs != -1 and epoch > max_epochs:
            raise MisconfigurationException(  # Lightning's words, then the fix
                f"You restored a checkpoint with current_epoch={epoch}, but you have set Trainer(max_epochs="
                f"{max_epochs}). Set `max_epochs` to at least {epoch} (or -1), or resume from an earlier checkpoint.")
        optimization = self._optimization
        if not strategy.lightning_restore_optimizer:
            return  # the strategy restores optimizer and scheduler states itself
        if _strategy_overrides(strategy, "load_optimizer_state_dict"):
            strategy.load_optimizer_state_dict(checkpoint)
        else:
            optimizers = [opt for opt in optimization.optimizers if not isinstance(opt, PlaceholderOptimizer)]
            load_optimizer_states(optimizers, checkpoint["optimizer_states"], path)
        load_scheduler_states(optimization.scheduler_configs, checkpoint["lr_schedulers"], path)


def _dtypes(module: Any) -> list[Any]:
    return [tensor.dtype for tensors in (module.parameters(), module.buffers()) for tensor in tensors]


def _strategy_overrides(strategy: Any, name: str) -> bool:
    from fulmen.strategies.strategy import Strategy

    return getattr(type(strategy), name) is not getattr(Strategy, name)


def _counters_from_lightning(checkpoint: dict[str, Any]) -> dict[str, int]:
    """Epoch and step counters from a checkpoint Lightning wrote (its loops keep nested progress dicts)."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epoch_progress = fit_loop.get("epoch_progress", {}).get("current", {})
    # `processed` already counts an epoch whose end was being handled when Lightning saved.
    current_epoch = epoch_progress.get("processed", checkpoint.get("epoch", 0))
    epoch_loop = fit_loop.get("epoch_loop.state_dict", {})
    global_step = checkpoint.get("global_step", 0)
    return {"current_epoch": int(current_epoch), "global_step": int(global_step),
            "batches_that_stepped": int(epoch_loop.get("_batches_that_stepped", global_step))}
