"""DeviceStatsMonitor: log the accelerator's device statistics around training, validation and test batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.accelerators.cpu import psutil_stats
from fulmen.callbacks.callback import Callback
from fulmen.trainer.state import logging_due
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class DeviceStatsMonitor(Callback):
    """Log `trainer.accelerator.get_device_stats(device)` as `DeviceStatsMonitor.<hook>/<stat>` from the
    train/validation/test batch start and end hooks, whenever the Trainer logs (`log_every_n_steps`).

    On the CPU the stats are `cpu_vm_percent`, `cpu_percent` and `cpu_swap_percent` (needs `psutil`, which
    fulmen does not depend on); on CUDA, `torch.cuda.memory_stats`. Needs a logger.

    Args:
        cpu_stats: None logs CPU stats only when training on the CPU; True also adds them on other devices;
            False never logs them (so nothing is logged on the CPU).
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self._cpu_stats = cpu_stats
        self._eval_batches = 0  # batches started in the running evaluation: when its stats are due

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException("Cannot use `DeviceStatsMonitor` callback with `Trainer(logger=False)`: "
                                            "give the Trainer a logger, or remove the callback.")
        if self._cpu_stats is None and trainer.strategy.root_device.type == "cpu":
            try:
                import psutil  # noqa: F401
            except ImportError as error:
                raise ModuleNotFoundError("`DeviceStatsMonitor` cannot log CPU stats as `psutil` is not installed: "
                                          "`pip install psutil`, or pass `cpu_stats=False`.") from error

    def _log_stats(self, trainer: Trainer, hook: str, due: bool) -> None:
        if not due:
            return
        device = trainer.strategy.root_device
        if self._cpu_stats is False and device.type == "cpu":
            return
        stats = trainer.accelerator.get_device_stats(device)
        if self._cpu_stats and device.type != "cpu":
            stats.update(psutil_stats("CPU", "cpu"))
        prefix = f"{type(self).__qualname__}.{hook}"
        for logger in trainer.loggers:
            separator = logger.group_separator
            logger.log_metrics({f"{prefix}{separator}{name}": value for name, value in stats.items()},
                               step=trainer.state.batches_that_stepped)

    def _train_due(self, trainer: Trainer) -> bool:
        state = trainer.state
        return logging_due(state.batches_that_stepped, trainer.log_every_n_steps, state.should_stop)

    def _eval_due(self, trainer: Trainer) -> bool:
        # An evaluation logs by its own batch count in this run (Lightning), counted at the batch start.
        every = trainer.log_every_n_steps
        return bool(every) and (self._eval_batches % every == 0 or trainer.should_stop)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._log_stats(trainer, "on_train_batch_start", self._train_due(trainer))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._log_stats(trainer, "on_train_batch_end", self._train_due(trainer))

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._eval_batches += 1
        self._log_stats(trainer, "on_validation_batch_start", self._eval_due(trainer))

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log_stats(trainer, "on_validation_batch_end", self._eval_due(trainer))

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._eval_batches += 1
        self._log_stats(trainer, "on_test_batch_start", self._eval_due(trainer))

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log_stats(trainer, "on_test_batch_end", self._eval_due(trainer))
