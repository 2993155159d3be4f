"""`BasePredictionWriter`: write predictions as they come (per batch) or all at once (per epoch)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Optional

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class WriteInterval(str, Enum):
    """When a prediction writer writes."""

    BATCH = "batch"
    EPOCH = "epoch"
    BATCH_AND_EPOCH = "batch_and_epoch"

    @property
    def on_batch(self) -> bool:
        return self in (WriteInterval.BATCH, WriteInterval.BATCH_AND_EPOCH)

    @property
    def on_epoch(self) -> bool:
        return self in (WriteInterval.EPOCH, WriteInterval.BATCH_AND_EPOCH)


class BasePredictionWriter(Callback):
    """Subclass and override `write_on_batch_end` and/or `write_on_epoch_end` to store predictions.

    Args:
        write_interval: "batch" calls `write_on_batch_end` after every predict batch, "epoch" calls
            `write_on_epoch_end` once with all predictions (kept even with `return_predictions=False`),
            "batch_and_epoch" both.

    `batch_indices` are the dataset indices of each batch, as the loader's batch sampler drew them.
    """

    def __init__(self, write_interval: Literal["batch", "epoch", "batch_and_epoch"] = "batch") -> None:
        if write_interval not in {member.value for member in WriteInterval}:
            raise MisconfigurationException(  # Lightning's words, then what was passed
                f"`write_interval` should be one of {[member.value for member in WriteInterval]}; received "
                f"{write_interval!r}."
            )
        self.interval = WriteInterval(write_interval)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if "dataloader_iter" in inspect.signature(pl_module.predict_step).parameters:
            raise NotImplementedError("A prediction writer cannot run with a `predict_step(dataloader_iter)`; take "
                                      "`batch, batch_idx` in `predict_step` instead.")

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        """Write one batch's `prediction`; override this when `write_interval` includes "batch"."""
        raise NotImplementedError(f"{type(self).__name__} writes per batch but does not override `write_on_batch_end`.")

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        """Write all `predictions` (per dataloader when there are several; `batch_indices` is always per dataloader);
        override this when `write_interval` includes "epoch"."""
        raise NotImplementedError(f"{type(self).__name__} writes per epoch but does not override `write_on_epoch_end`.")

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.interval.on_batch:
            batch_indices = trainer.predict_loop.current_batch_indices
            self.write_on_batch_end(trainer, pl_module, outputs, batch_indices, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.interval.on_epoch:
            loop = trainer.predict_loop
            self.write_on_epoch_end(trainer, pl_module, loop.predictions, loop.epoch_batch_indices)
