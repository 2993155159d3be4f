"""`Timer`: measures the time spent training, validating and testing, and stops `fit` after a duration."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Optional, Union

from fulmen.callbacks.callback import Callback
from fulmen.trainer.state import RunningStage
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class Interval(str, Enum):
    """When `Timer` checks the clock during training: after every batch or after every epoch."""

    step = "step"
    epoch = "epoch"


_DURATION = re.compile(r"(\d+):(\d\d):(\d\d):(\d\d)")


def _parse_duration(duration: Union[str, timedelta, dict[str, int], None]) -> Optional[float]:
    if duration is None:
        return None
    if isinstance(duration, str):
        match = _DURATION.fullmatch(duration.strip())
        if match is None:
            raise MisconfigurationException(
                f"`Timer(duration={duration!r})` is not a duration; write it as \"DD:HH:MM:SS\" (e.g. \"00:12:00:00\"), "
                "or pass a `datetime.timedelta` or a dict such as `{'hours': 12}`."
            )
        days, hours, minutes, seconds = (int(group) for group in match.groups())
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(duration, dict):
        duration = timedelta(**duration)
    if not isinstance(duration, timedelta):
        raise TypeError(f"`Timer(duration=...)` takes a str, a timedelta or a dict; received {type(duration).__name__}.")
    return duration.total_seconds()


class Timer(Callback):
    """Tracks the time each stage took and stops `fit` once `duration` of training time has passed.

    Args:
        duration: the training time allowed: a `timedelta`, a dict of `timedelta` arguments, or "DD:HH:MM:SS".
            `None` only measures.
        interval: check the clock after every training batch ("step") or every training epoch ("epoch").
        verbose: say so when the time limit stops training.

    The training time spent before a checkpoint is carried over when fit resumes from it.
    """

    def __init__(self, duration: Union[str, timedelta, dict[str, int], None] = None, interval: str = Interval.step,
                 verbose: bool = True) -> None:
        super().__init__()
        self._duration = _parse_duration(duration)
        if interval not in {member.value for member in Interval}:
            raise MisconfigurationException(  # Lightning's words
                f"Unsupported parameter value `Timer(interval={interval})`. Possible choices are: step, epoch."
            )
        self._interval = Interval(interval)
        self._verbose = verbose
        self._start_time: dict[RunningStage, Optional[float]] = dict.fromkeys(RunningStage)
        self._end_time: dict[RunningStage, Optional[float]] = dict.fromkeys(RunningStage)
        self._offset = 0.0  # training seconds restored from a checkpoint

    @staticmethod
    def _stage(stage: str) -> RunningStage:
        try:
            return RunningStage(stage)
        except ValueError:
            choices = ", ".join(repr(member.value) for member in RunningStage)
            raise ValueError(f"{stage!r} is not a stage; use one of {choices}.") from None

    def start_time(self, stage: str = RunningStage.TRAINING) -> Optional[float]:
        """When `stage` last started (`time.monotonic()` seconds), or None if it has not run."""
        return self._start_time[self._stage(stage)]

    def end_time(self, stage: str = RunningStage.TRAINING) -> Optional[float]:
        """When `stage` last ended (`time.monotonic()` seconds), or None if it has not ended."""
        return self._end_time[self._stage(stage)]

    def time_elapsed(self, stage: str = RunningStage.TRAINING) -> float:
        """Seconds `stage` has run (so far, if it is running); training includes the time restored from a checkpoint."""
        stage = self._stage(stage)
        start, end = self._start_time[stage], self._end_time[stage]
        offset = self._offset if stage == RunningStage.TRAINING else 0
        if start is None:
            return offset
        if end is None:
            return time.monotonic() - start + offset
        return end - start + offset

    def time_remaining(self, stage: str = RunningStage.TRAINING) -> Optional[float]:
        """Seconds left of `duration` for `stage` (negative once exceeded), or None without a duration."""
        if self._duration is None:
            return None
        return self._duration - self.time_elapsed(stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time[RunningStage.TRAINING] = time.monotonic()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time[RunningStage.TRAINING] = time.monotonic()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time[RunningStage.VALIDATING] = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time[RunningStage.VALIDATING] = time.monotonic()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time[RunningStage.TESTING] = time.monotonic()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time[RunningStage.TESTING] = time.monotonic()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After a restore the budget may already be spent: check once before training, whatever the interval.
        if self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._interval == Interval.step and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._interval == Interval.epoch and self._duration is not None:
            self._check_time_remaining(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage.value: self.time_elapsed(stage) for stage in RunningStage}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = state_dict.get("time_elapsed", {}).get(RunningStage.TRAINING.value, 0)

    def _check_time_remaining(self, trainer: Trainer) -> None:
        # Rank 0's clock decides, so every process stops at the same step.
        should_stop = trainer.strategy.broadcast(self.time_elapsed() >= self._duration)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and self._verbose:
            elapsed = timedelta(seconds=int(self.time_elapsed()))
            rank_zero_info(f"Time limit reached. Elapsed time is {elapsed}. Signaling Trainer to stop.")
