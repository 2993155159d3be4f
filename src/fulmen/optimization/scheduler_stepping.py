"""Which LR schedulers step at a given point of fit, and stepping them (Lightning's rules).

Owns: interval ("step"/"epoch"), frequency, ReduceLROnPlateau's monitored metric (strict or not).
The fit loop decides the points; Lightning's order, which it follows:
- "step" schedulers step after each optimizer step, before `on_train_batch_end`;
- "epoch" schedulers step on the epoch's last batch, also before `on_train_batch_end` (not at epoch end);
- plateau schedulers step after `on_train_batch_end` / validation ("step") or after `on_train_epoch_end`
  ("epoch"), so they see the metrics logged there.
Manual optimization never steps schedulers automatically (`Optimization.automatic_schedulers` is empty).
"""

from __future__ import annotations

from typing import Any

from fulmen.optimization.configure_optimizers import LRSchedulerConfig
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn


def step_schedulers(configs: list[LRSchedulerConfig], hooks: Any, metrics: Any, interval: str, count: int,
                    plateau: bool = False) -> None:
    """Step the schedulers in `configs` whose interval is `interval` and whose frequency divides `count`.

    Args:
        configs: the schedulers the loop steps (`Optimization.automatic_schedulers`).
        hooks: runs `lr_scheduler_step(scheduler, metric)` (the module's hook).
        metrics: publishes `callback_metrics` (the MetricsRouter); read only when a plateau scheduler is due.
        interval: "step" or "epoch".
        count: for "step", the batch index + 1 — Lightning counts frequency from the epoch's batch index, not
            from `global_step`, so it restarts each epoch; for "epoch", `current_epoch` + 1.
        plateau: step only the ReduceLROnPlateau schedulers (True) or only the others (False).
    """
    if not configs:
        return
    for config in configs:
        if config.reduce_on_plateau != plateau or config.interval != interval or count % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            callback_metrics = metrics.callback_metrics
            metric = callback_metrics.get(config.monitor)  # type: ignore[arg-type]
            if metric is None:
                available = sorted(callback_metrics)
                if config.strict:
                    raise MisconfigurationException(  # Lightning's words, then the fix
                        f"ReduceLROnPlateau conditioned on metric {config.monitor} which is not available. Available "
                        f"metrics are: {available}. Condition can be set using `monitor` key in lr scheduler dict; "
                        f"log it with `self.log({config.monitor!r}, ...)`, or set 'strict': False to skip the step."
                    )
                rank_zero_warn(f"ReduceLROnPlateau conditioned on metric {config.monitor} which is not available but "
                               f"strict is set to `False`. Skipping learning rate update (available: {available}).",
                               category=RuntimeWarning)
                continue
        hooks.lr_scheduler_step(config.scheduler, metric)


class FitLoopStepper:
    """The fit loop's view of scheduler stepping: `stepper(interval, batch_idx, plateau=False, skip=False)`."""

    def __init__(self, optimization: Any, hooks: Any, metrics: Any, state: Any) -> None:
        self._optimization, self._hooks, self._metrics, self._state = optimization, hooks, metrics, state

    def __call__(self, interval: str, batch_idx: int, plateau: bool = False, skip: bool = False) -> None:
        configs = self._optimization.automatic_schedulers  # read per call: `setup` replaces the list each run
        if skip or not configs:
            return
        count = batch_idx + 1 if interval == "step" else self._state.current_epoch + 1
        step_schedulers(configs, self._hooks, self._metrics, interval, count, plateau)
