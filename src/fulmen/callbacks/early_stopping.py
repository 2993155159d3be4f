"""EarlyStopping: stop fit when a monitored metric stops improving (or crosses a threshold)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import torch

from fulmen.callbacks.callback import Callback
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import log, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class EarlyStoppingReason(Enum):
    """Why `EarlyStopping` stopped training (`EarlyStopping.stopping_reason`); saved in checkpoints as its value."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4


class EarlyStopping(Callback):
    """Set `trainer.should_stop` once `monitor` has not improved by more than `min_delta` for `patience` checks.

    Also stops when the value is not finite (`check_finite`), reaches `stopping_threshold`, or passes
    `divergence_threshold`. Checks run after validation, or at the end of each training epoch when
    validation runs once per epoch (override with `check_on_train_epoch_end`).
    """

    _is_early_stopping = True
    _monitors_metrics = True
    mode_dict = {"min": torch.lt, "max": torch.gt}  # mode -> "is better than"; a subclass may change or add modes
    order_dict = {"min": "<", "max": ">"}  # mode -> the comparison shown in the threshold messages

    def __init__(self, monitor: str, min_delta: float = 0.0, patience: int = 3, verbose: bool = False,
                 mode: str = "min", strict: bool = True, check_finite: bool = True,
                 stopping_threshold: float | None = None, divergence_threshold: float | None = None,
                 check_on_train_epoch_end: bool | None = None, log_rank_zero_only: bool = False) -> None:
        if mode not in self.mode_dict:
            raise MisconfigurationException(f"`mode` can be {', '.join(self.mode_dict)}, got {mode}: pass "
                                            f"`EarlyStopping(mode=...)` one of {', '.join(map(repr, self.mode_dict))}.")
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.verbose = verbose
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self._check_on_train_epoch_end = check_on_train_epoch_end
        # Improvement means beating the best by more than |min_delta| in the monitored direction.
        increasing = self.monitor_op == torch.gt
        self.min_delta = abs(min_delta) if increasing else -abs(min_delta)
        self.best_score = torch.tensor(float("-inf") if increasing else float("inf"))
        self.wait_count = 0
        self.stopped_epoch = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None

    @property
    def monitor_op(self) -> Any:
        return self.mode_dict[self.mode]

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            # Validation once per epoch: check when the epoch ends; otherwise check after each validation.
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end and not self._skip(trainer):
            self._check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._check_on_train_epoch_end and not self._skip(trainer):
            self._check(trainer)

    def _skip(self, trainer: Trainer) -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def _check(self, trainer: Trainer) -> None:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            message = (f"EarlyStopping monitors {self.monitor!r}, which was not logged; available: "
                       f"{sorted(metrics)}. Log it with `self.log({self.monitor!r}, ...)` or set `monitor` to one of those.")
            if self.strict:
                raise RuntimeError(message)
            if self.verbose:
                rank_zero_warn(message, category=RuntimeWarning)
            return
        current = torch.as_tensor(metrics[self.monitor]).detach().squeeze().cpu()
        should_stop, reason = self._evaluate(current)
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)  # any rank stopping stops all
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if reason and self.verbose:
            _log_reason(trainer, reason, self.log_rank_zero_only)

    def _evaluate(self, current: torch.Tensor) -> tuple[bool, str | None]:
        better = self.monitor_op
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (f"Monitored metric {self.monitor} = {current.item()} is not finite. Previous best value was "
                          f"{self.best_score.item():.3f}. Signaling Trainer to stop.")
        if self.stopping_threshold is not None and better(current, torch.tensor(self.stopping_threshold)):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            return True, (f"Stopping threshold reached: {self.monitor} = {current.item()} {self.order_dict[self.mode]} "
                          f"{self.stopping_threshold}. Signaling Trainer to stop.")
        if self.divergence_threshold is not None and better(-current, torch.tensor(-self.divergence_threshold)):
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            return True, (f"Divergence threshold reached: {self.monitor} = {current.item()} "
                          f"{self.order_dict[self.mode]} {self.divergence_threshold}. Signaling Trainer to stop.")
        if better(current - self.min_delta, self.best_score):
            previous = self.best_score
            self.best_score, self.wait_count = current, 0
            change = ("" if not torch.isfinite(previous)
                      else f" by {abs(previous - current).item():.3f} >= min_delta = {abs(self.min_delta)}")
            return False, f"Metric {self.monitor} improved{change}. New best score: {current.item():.3f}"
        self.wait_count += 1
        if self.wait_count >= self.patience:
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            return True, (f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} records. "
                          f"Best score: {self.best_score.item():.3f}. Signaling Trainer to stop.")
        return False, None

    def state_dict(self) -> dict[str, Any]:
        return {"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch, "best_score": self.best_score,
                "patience": self.patience, "stopping_reason": self.stopping_reason.value,
                "stopping_reason_message": self.stopping_reason_message}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]
        reason = state_dict.get("stopping_reason", EarlyStoppingReason.NOT_STOPPED.value)
        # Checkpoints from fulmen before the enum stored the reason's name in lower case.
        self.stopping_reason = EarlyStoppingReason[reason.upper()] if isinstance(reason, str) else EarlyStoppingReason(
            reason)
        self.stopping_reason_message = state_dict.get("stopping_reason_message")


def _log_reason(trainer: Trainer, message: str, rank_zero_only: bool) -> None:
    """Every rank reports (prefixed with its rank) unless `log_rank_zero_only`, as in Lightning."""
    if trainer.world_size == 1:
        log.info(message)
    elif not rank_zero_only or trainer.global_rank == 0:
        log.info(f"[rank: {trainer.global_rank}] {message}")
