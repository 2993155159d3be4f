"""LearningRateMonitor: log each optimizer's learning rate (and optionally momentum, weight decay)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import torch

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.optimization.placeholder import PlaceholderOptimizer
from fulmen.trainer.state import logging_due
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class LearningRateMonitor(Callback):
    """Log `lr-<Optimizer>` (or the scheduler config's `name`) per param group, as Lightning names them.

    Args:
        logging_interval: "step", "epoch", or None to follow each scheduler's own interval.
        log_momentum: also log `<name>-momentum` (beta1 for Adam-like optimizers).
        log_weight_decay: also log `<name>-weight_decay`.
    """

    def __init__(self, logging_interval: str | None = None, log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException(
                f"`LearningRateMonitor(logging_interval={logging_interval!r})` is invalid; use 'step', 'epoch' or None."
            )
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        # The latest momentum / weight decay logged per "<name>-momentum" / "<name>-weight_decay" (None until then).
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if not trainer.loggers:
            raise MisconfigurationException(  # Lightning's words, then the fix
                "Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger. Remove `logger=False` "
                "from the Trainer, or drop the callback."
            )
        if self.log_momentum and not all(
                "momentum" in opt.defaults or "betas" in opt.defaults for opt in trainer.optimizers):
            rank_zero_warn("You have set log_momentum=True, but some optimizers do not have momentum. This will log "
                           "a value 0 for the momentum.", category=RuntimeWarning)
        names = [name for _, group_names, _ in _named_optimizers(trainer) for name in group_names]
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        # Lightning's monitor logs when the Trainer's step values would reach the loggers after this batch.
        due = logging_due(trainer.state.batches_that_stepped, trainer.log_every_n_steps, trainer.should_stop)
        if due and self.logging_interval != "epoch":
            self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats: dict[str, float] = {}
        named = _named_optimizers(trainer)
        for _, names, _ in named:
            self._carry_over_history(names)
        for optimizer, names, scheduler_interval in named:
            if scheduler_interval is not None and interval not in (scheduler_interval, "any"):
                continue
            uses_betas = "betas" in optimizer.defaults
            for group, name in zip(optimizer.param_groups, names):
                stats[name] = group["lr"]
                self.lrs[name].append(group["lr"])
                if self.log_momentum:
                    key = f"{name}-momentum"
                    stats[key] = self.last_momentum_values[key] = (group["betas"][0] if uses_betas
                                                                   else group.get("momentum", 0))
                if self.log_weight_decay:
                    key = f"{name}-weight_decay"
                    stats[key] = self.last_weight_decay_values[key] = group["weight_decay"]
        if not stats:
            return
        device = trainer.strategy.root_device
        trainer.callback_metrics.update({name: torch.tensor(value, device=device) for name, value in stats.items()})
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=trainer.state.batches_that_stepped)

    def _carry_over_history(self, names: list[str]) -> None:
        # An optimizer that gained a param group during fit (e.g. a finetuning callback) renames its key "lr-SGD" to
        # "lr-SGD/pg1"; as in Lightning, the history recorded so far moves to the new name.
        for name in names:
            old = name.replace("/pg1", "")
            if "/pg1" in name and old in self.lrs:
                self.lrs[name] = self.lrs.pop(old)
            else:
                self.lrs.setdefault(name, [])


def _named_optimizers(trainer: Trainer) -> list[tuple[Any, list[str], str | None]]:
    """(optimizer, one name per param group, scheduler interval or None) — schedulers' optimizers first."""
    seen_types: defaultdict[type, int] = defaultdict(int)
    seen: list[Any] = []
    entries = []

    def names_for(optimizer: Any, base: str, count_type: bool) -> list[str]:
        seen.append(optimizer)
        if count_type:
            seen_types[type(optimizer)] += 1
        count = seen_types.get(type(optimizer), 0)
        if count > 1:
            base = f"{base}-{count - 1}"
        groups = optimizer.param_groups
        group_names = [group.get("name", f"pg{i}") for i, group in enumerate(groups, start=1)]
        duplicated = {name for name in group_names if group_names.count(name) > 1}
        if duplicated:
            raise MisconfigurationException(  # Lightning's words, then the fix
                "A single `Optimizer` cannot have multiple parameter groups with identical `name` values. "
                f"{base} has duplicated parameter group names {duplicated}: give each param group a unique 'name' so "
                "their learning rates can be told apart."
            )
        if len(groups) > 1:
            return [f"{base}/{name}" for name in group_names]
        return [f"{base}/{groups[0]['name']}"] if groups[0].get("name") else [base]

    for config in trainer.lr_scheduler_configs:
        optimizer = config.scheduler.optimizer
        base = config.name if config.name is not None else f"lr-{type(optimizer).__name__}"
        entries.append((optimizer, names_for(optimizer, base, config.name is None), config.interval))
    for optimizer in trainer.optimizers:
        if isinstance(optimizer, PlaceholderOptimizer) or any(optimizer is other for other in seen):
            continue
        entries.append((optimizer, names_for(optimizer, f"lr-{type(optimizer).__name__}", True), None))
    return entries
