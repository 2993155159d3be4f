"""The checkpoint format: build the checkpoint dict from a run, and restore a run from one.

Owns: which keys a checkpoint holds (Lightning's layout) and which checkpoint a run restores (`ckpt_path`); how
each part is restored, and when, is `checkpoint_restore.py`'s.
Does not own: bytes on disk (`checkpoint_io.py`) or when checkpoints are taken (callbacks).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fulmen.core.compiled import strip_compiled_keys
from fulmen.core.hparams import checkpointable_hparams
from fulmen.core.saving import left_out_key
from fulmen.optimization.placeholder import PlaceholderOptimizer
from fulmen.trainer.checkpoint_restore import CheckpointRestore
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.optimization.optimization import Optimization
    from fulmen.trainer.run import Run
    from fulmen.trainer.state import TrainerState

FORMAT_VERSION = "2.6.0"  # the Lightning checkpoint layout these dicts follow


class Checkpointing:
    """Saves a run's state into a dict and restores it.

    Args:
        state: the counters checkpoints record and resume (`current_epoch`, `global_step`, ...).
        hooks: calls `on_save_checkpoint` / `on_load_checkpoint` on callbacks, datamodule and module.
        strategy: reads and writes the files (its `checkpoint_io`), owns the precision plugin, the ranks and barrier.
        optimization: whose public `optimizers` and `scheduler_configs` are saved and restored.
        fast_dev_run: the Trainer flag, named in the error when `ckpt_path="best"` cannot exist.
    """

    def __init__(self, state: TrainerState, hooks: HookDispatch, strategy: Strategy, optimization: Optimization,
                 fast_dev_run: int | bool = False) -> None:
        self._state = state
        self._hooks = hooks
        self._strategy = strategy
        self._optimization = optimization
        self._fast_dev_run = fast_dev_run
        # `trainer.ckpt_path = path`: every later run loads it until it is set to None or a run passes its own.
        self.user_path: str | os.PathLike | None = None

    def dump(self, run: Run, weights_only: bool = False) -> dict[str, Any]:
        module = run.module
        loop_state = self._loop_state(run)
        # Lightning's layout. Its restore reads `state_dict`, `loops`, `optimizer_states`, `lr_schedulers`,
        # `callbacks` (by `state_key`) and the precision plugin's and datamodule's states under their class names;
        # `hyper_parameters` feed `load_from_checkpoint`; `epoch`/`global_step` are for people and old checkpoints.
        checkpoint: dict[str, Any] = {
            "epoch": loop_state["current_epoch"],
            "global_step": self._state.global_step,
            "pytorch-lightning_version": FORMAT_VERSION,
            "state_dict": strip_compiled_keys(self._strategy.lightning_module_state_dict()),
            "loops": {"fit_loop": loop_state},
        }
        if not weights_only:
            optimization = self._optimization
            states = ((callback.state_key, callback.state_dict()) for callback in run.callbacks)
            checkpoint["callbacks"] = {key: state for key, state in states if state}
            strategy = self._strategy
            checkpoint["optimizer_states"] = [strategy.optimizer_state(opt) for opt in optimization.optimizers
                                              if not isinstance(opt, PlaceholderOptimizer)]
            checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in optimization.scheduler_configs]
            precision = strategy.precision_plugin
            precision_state = precision.state_dict()
            if precision_state:
                checkpoint[type(precision).__name__] = precision_state
            precision.on_save_checkpoint(checkpoint)
        save_hparams(checkpoint, module)
        datamodule = run.datamodule
        if datamodule is not None:
            save_hparams(checkpoint, datamodule)
            state = datamodule.state_dict()
            if state:
                checkpoint[type(datamodule).__qualname__] = state
        self._hooks.on_save_checkpoint(checkpoint)
        return checkpoint

    def _loop_state(self, run: Run) -> dict[str, Any]:
        fit_loop = run.fit_loop
        fitting = fit_loop is not None and run.fn == TrainerFn.FITTING
        if fitting and fit_loop.signal_state is not None:
            # After SIGTERM/SIGINT nothing trains any more, but the cut-short epoch still ends (hooks, callbacks
            # saving): every checkpoint written from then on resumes where the signal stopped training.
            return fit_loop.signal_state
        state = self._state.state_dict()
        if fitting:
            state.update(fit_loop.resume_state())
        return state

    def freeze_loop_state(self, run: Run) -> None:
        """Record where training stopped for a signal; checkpoints written from now on resume from there."""
        fit_loop = run.fit_loop
        fit_loop.signal_state = None
        fit_loop.signal_state = self._loop_state(run)

    def save(self, run: Run, path: str | os.PathLike, weights_only: bool | None = False,
             storage_options: Any = None) -> None:
        if run.module is None:
            raise AttributeError("Saving a checkpoint is only possible if a model is attached to the Trainer. Did you "
                                 "call `Trainer.save_checkpoint()` before calling `Trainer.{fit,validate,test,predict}`?")
        if weights_only is None:
            weights_only = False
            rank_zero_info("`weights_only` was not set, defaulting to `False`.")  # Lightning's line
        checkpoint = self.dump(run, weights_only)
        strategy = self._strategy
        strategy.save_checkpoint(checkpoint, path, storage_options=storage_options)  # rank 0 writes
        strategy.barrier("save_checkpoint")

    def resolve(self, run: Run, path: str | os.PathLike | None, model_given: bool) -> str | None:
        """Turn `ckpt_path` ("best", "last", a path, or None) into a file path or None (use the model as is); a
        path set with `trainer.ckpt_path = ...` is used as it is, unless the run passes one."""
        if self.user_path:
            if not path:
                return os.fspath(self.user_path)
            rank_zero_warn(f"`trainer.ckpt_path = {self.user_path!r}` was called but then you passed "
                           f"`trainer.{run.fn.value}(ckpt_path={path!r})`. The latter will be loaded.")
            self.user_path = None
        fn = run.fn
        checkpoint_callbacks = [callback for callback in run.callbacks if getattr(callback, "_is_checkpoint", False)]
        callback = checkpoint_callbacks[0] if checkpoint_callbacks else None
        if path is None and fn == TrainerFn.FITTING and any(
                getattr(cb, "_is_exception_checkpoint", False) for cb in checkpoint_callbacks):
            # Lightning: an OnExceptionCheckpoint makes a plain `fit()` resume as `ckpt_path="last"`.
            rank_zero_warn("`.fit(ckpt_path=None)` was called without a model. The last model of the previous `fit` "
                           "call will be used (an `OnExceptionCheckpoint` resumes from the newest on-exception or "
                           "\"last\" checkpoint). You can pass `fit(ckpt_path='best')` to use the best model or "
                           "`fit(ckpt_path='last')` to use the last model. If you pass a value, this warning will be "
                           "silenced.")
            path = "last"
        if path is None:
            hpc = _hpc_resume_path(run)
            if hpc is not None:  # a requeued SLURM job resumes where the requeue signal saved (Lightning's "hpc")
                rank_zero_info(f"Resuming the requeued SLURM job from {hpc}.")
                return hpc
        if path is None:
            if model_given or fn == TrainerFn.FITTING:
                return None
            rank_zero_warn(f"`.{fn.value}(ckpt_path=None)` was called without a model. The best model of the previous "
                           f"`fit` call will be used. You can pass `.{fn.value}(ckpt_path='best')` to use the best "
                           f"model or `.{fn.value}(ckpt_path='last')` to use the last model. If you pass a value, this "
                           "warning will be silenced.")
            path = "best"
        if path == "hpc":
            hpc = _hpc_resume_path(run, detect=False)
            if hpc is None:
                raise ValueError(f'`.{fn.value}(ckpt_path="hpc")` found no `hpc_ckpt_<n>.ckpt` in '
                                 f"{run.module.trainer.default_root_dir}; SLURM auto-requeue saves them there.")
            return hpc
        if path == "best":  # Lightning's words, then the fix
            if len(checkpoint_callbacks) > 1:
                rank_zero_warn(f'`.{fn.value}(ckpt_path="best")` is called with Trainer configured with multiple '
                               "`ModelCheckpoint` callbacks. It will use the best checkpoint path from first checkpoint "
                               "callback.")
            if callback is None:
                raise ValueError(f'`.{fn.value}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured. '
                                 "Pass a model, or a checkpoint file path.")
            if not callback.best_model_path:
                if self._fast_dev_run:
                    raise ValueError(f'You cannot execute `.{fn.value}(ckpt_path="best")` with `fast_dev_run=True`. '
                                     f"Please pass an exact checkpoint path to `.{fn.value}(ckpt_path=...)`.")
                raise ValueError(f'`.{fn.value}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured to '
                                 "save the best model: it has saved none yet.")
            return callback.best_model_path
        if path == "last":
            # Rank zero looks at the files and decides; every rank loads what it chose.
            strategy = self._strategy
            return strategy.broadcast(self._newest_last(fn, checkpoint_callbacks) if strategy.is_global_zero else None)
        return os.fspath(path)

    def _newest_last(self, fn: TrainerFn, checkpoint_callbacks: list[Any]) -> str | None:
        candidates = set()
        for callback in checkpoint_callbacks:
            if getattr(callback, "last_model_path", ""):
                candidates.add(callback.last_model_path)
            # In a fresh process (a re-queued job) only the files on disk tell where `last` is.
            candidates.update(getattr(callback, "_find_last_checkpoints", list)())
            if getattr(callback, "_is_exception_checkpoint", False):
                candidates.add(callback.ckpt_path)
        existing = [candidate for candidate in candidates if os.path.exists(candidate)]
        if not existing:  # not an error, so it can be set before the first fit (as in Lightning)
            rank_zero_warn(f'.{fn.value}(ckpt_path="last") is set, but there is no last checkpoint available. No '
                           "checkpoint will be loaded. HINT: Set `ModelCheckpoint(..., save_last=True)`.")
            return None
        return max(existing, key=os.path.getmtime)

    def restore_from(self, run: Run, path: str | os.PathLike | None, weights_only: bool | None,
                     max_epochs: int | None = None) -> CheckpointRestore:
        """The restore of `run` from `path` (None: nothing to restore), in Lightning's two halves; a fit's
        `max_epochs` (-1 or None: no limit) must not be below the checkpoint's epoch."""
        return CheckpointRestore(self._state, self._hooks, self._strategy, self._optimization, run, path,
                                 weights_only, max_epochs)


def _hpc_resume_path(run: Run, detect: bool = True) -> str | None:
    from fulmen.strategies.cluster_environments import SLURMEnvironment
    from fulmen.strategies.slurm_requeue import hpc_resume_path

    if detect and not SLURMEnvironment.detect():
        return None
    return hpc_resume_path(run.module.trainer.default_root_dir)


def save_hparams(checkpoint: dict[str, Any], owner: Any) -> None:
    """Store a module's or datamodule's saved hyperparameters under its `CHECKPOINT_HYPER_PARAMS_*` keys."""
    if not getattr(owner, "_hparams", None):
        return
    checkpoint[owner.CHECKPOINT_HYPER_PARAMS_KEY], left_out = checkpointable_hparams(owner.hparams)
    checkpoint[owner.CHECKPOINT_HYPER_PARAMS_NAME] = getattr(owner, "_hparams_name", "kwargs")
    if left_out:  # fulmen's record of what `load_from_checkpoint` must be given again
        checkpoint[left_out_key(owner.CHECKPOINT_HYPER_PARAMS_NAME)] = left_out
    if getattr(owner, "_hparams_type", None) == "Namespace":
        checkpoint[owner.CHECKPOINT_HYPER_PARAMS_TYPE] = "Namespace"
