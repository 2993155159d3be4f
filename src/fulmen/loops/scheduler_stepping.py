"""Which LR schedulers step at a given point of fit, and stepping them (Lightning's rules).

Owns: interval ("step"/"epoch"), frequency counted from the batch index or epoch, ReduceLROnPlateau's
monitored metric (strict or not). Manual optimization never steps schedulers automatically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def step_schedulers(trainer: Trainer, interval: str, batch_idx: int, plateau: bool = False,
                    skip: bool = False) -> None:
    """Step the schedulers whose interval and frequency are due (plateau ones only when `plateau`)."""
    configs = trainer._optimization.scheduler_configs
    if skip or not configs or not trainer.lightning_module.automatic_optimization:
        return
    count = (batch_idx if interval == "step" else trainer._state.current_epoch) + 1
    for config in configs:
        if config.reduce_on_plateau != plateau or config.interval != interval or count % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            metric = trainer.callback_metrics.get(config.monitor)  # type: ignore[arg-type]
            if metric is None:
                available = sorted(trainer.callback_metrics)
                if config.strict:
                    raise MisconfigurationException(
                        f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; available "
                        f"metrics: {available}. Log it with `self.log({config.monitor!r}, ...)` or set "
                        "'strict': False in the lr_scheduler_config to skip the step."
                    )
                rank_zero_warn(f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged "
                               f"(available: {available}); skipping this scheduler step (strict=False).",
                               category=RuntimeWarning)
                continue
        trainer._hooks.lr_scheduler_step(config.scheduler, metric)
