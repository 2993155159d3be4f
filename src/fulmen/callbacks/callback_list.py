"""Assemble the run's callbacks: the user's, the module's `configure_callbacks()`, and the defaults."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info


def build_trainer_callbacks(user_callbacks: Any, enable_progress_bar: bool, enable_model_summary: bool,
                            enable_checkpointing: bool, refuse_checkpoints: bool = False,
                            max_time: timedelta | None = None) -> list[Callback]:
    """The Trainer's callbacks, in Lightning's order: the user's list, a `Timer` for `max_time`, a progress bar and a
    model summary unless disabled, then the checkpoint callbacks (tuner callbacks go first)."""
    if user_callbacks is None:
        callbacks: list[Callback] = []
    elif isinstance(user_callbacks, Callback):
        callbacks = [user_callbacks]
    elif isinstance(user_callbacks, Sequence):
        callbacks = list(user_callbacks)
    else:
        raise TypeError(f"`callbacks` must be a Callback or a list of them; received {type(user_callbacks).__name__}.")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"`callbacks` holds {type(callback).__name__}, which is not a `fulmen.Callback`; "
                            "subclass `fulmen.Callback`.")
    from fulmen.callbacks.model_summary import ModelSummary
    from fulmen.callbacks.progress_bar import ProgressBar, TQDMProgressBar

    bars = [cb for cb in callbacks if isinstance(cb, ProgressBar)]
    has_bar = bool(bars)
    if len(bars) > 1:  # Lightning's checks and words, then the fix
        raise MisconfigurationException("You added multiple progress bar callbacks to the Trainer, but currently only "
                                        f"one progress bar is supported ({[type(bar).__name__ for bar in bars]}); "
                                        "keep one.")
    if has_bar and not enable_progress_bar:
        raise MisconfigurationException(
            f"Trainer was configured with `enable_progress_bar=False` but found `{type(bars[0]).__name__}` in "
            "callbacks list; remove one of them."
        )
    if refuse_checkpoints and any(getattr(cb, "_is_checkpoint", False) for cb in callbacks):
        raise MisconfigurationException(
            "Trainer was configured with `enable_checkpointing=False` but found `ModelCheckpoint` in callbacks list; "
            "remove the callback, or drop `enable_checkpointing=False`."
        )
    if max_time is not None:
        _add_timer(callbacks, max_time)
    if enable_progress_bar and not has_bar:
        callbacks.append(TQDMProgressBar())
    if enable_model_summary and not any(isinstance(cb, ModelSummary) for cb in callbacks):
        # A RichProgressBar brings its rich summary table, as in Lightning.
        from fulmen.callbacks.progress.rich_progress import RichProgressBar
        from fulmen.callbacks.rich_model_summary import RichModelSummary

        rich_bar = any(isinstance(cb, RichProgressBar) for cb in callbacks)
        callbacks.append(RichModelSummary() if rich_bar else ModelSummary())
    if enable_checkpointing:
        checkpoint_type = _checkpoint_type()
        # Any checkpoint callback (an OnExceptionCheckpoint too) replaces the default, as in Lightning.
        if checkpoint_type is not None and not any(getattr(cb, "_is_checkpoint", False) for cb in callbacks):
            callbacks.append(checkpoint_type())
    return _checkpoints_last(callbacks)


def _add_timer(callbacks: list[Callback], max_time: timedelta) -> None:
    # As in Lightning, `max_time` is a Timer callback checking after every batch: its elapsed time is saved in
    # checkpoints and counts on after a resume, and every rank stops at the step rank 0's clock decides.
    from fulmen.callbacks.timer import Timer

    if any(isinstance(cb, Timer) for cb in callbacks):
        rank_zero_info("Ignoring `Trainer(max_time=...)`, callbacks list already contains a Timer.")
        return
    callbacks.append(Timer(duration=max_time, interval="step"))


def has_timer(callbacks: list[Callback]) -> bool:
    """Whether a `Timer` ends the fit (then an unset `max_epochs` means no epoch limit, as in Lightning)."""
    from fulmen.callbacks.timer import Timer

    return any(isinstance(cb, Timer) for cb in callbacks)


def attach_module_logging(callbacks: list[Callback], module: Any) -> None:
    """Give every callback the module's `log` and `log_dict` for the run, so a callback hook can call `self.log`
    (Lightning does the same at the start of each run)."""
    for callback in callbacks:
        callback.log = module.log
        callback.log_dict = module.log_dict


def merge_module_callbacks(trainer_callbacks: list[Callback], module_callbacks: Any) -> list[Callback]:
    """Add the callbacks from `configure_callbacks()`, replacing trainer callbacks of the same type."""
    if not module_callbacks:
        return list(trainer_callbacks)
    if isinstance(module_callbacks, Callback):
        module_callbacks = [module_callbacks]
    # A module callback replaces trainer callbacks of its own type or of a base type (MyBar replaces the default bar).
    kept = [cb for cb in trainer_callbacks if not any(isinstance(new, type(cb)) for new in module_callbacks)]
    return _checkpoints_last(kept + list(module_callbacks))


def _checkpoint_type() -> type | None:
    try:
        from fulmen.callbacks.model_checkpoint import ModelCheckpoint
    except ImportError:
        return None
    return ModelCheckpoint


def _checkpoints_last(callbacks: list[Callback]) -> list[Callback]:
    # Checkpoint callbacks go last so they save after every other callback has updated its state; the tuner's
    # callbacks go first (they run trial fits before anything else sees the run), as in Lightning.
    from fulmen.callbacks.batch_size_finder import BatchSizeFinder
    from fulmen.callbacks.lr_finder import LearningRateFinder

    tuners = [cb for cb in callbacks if isinstance(cb, (BatchSizeFinder, LearningRateFinder))]
    checkpoints = [cb for cb in callbacks if getattr(cb, "_is_checkpoint", False) and cb not in tuners]
    others = [cb for cb in callbacks if not any(cb is kept for kept in tuners + checkpoints)]
    return tuners + others + checkpoints
