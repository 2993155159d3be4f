"""GradientAccumulationScheduler: a gradient accumulation factor that changes with the epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class GradientAccumulationScheduler(Callback):
    """Set `trainer.accumulate_grad_batches` at the start of each epoch from `scheduling`.

    Args:
        scheduling: `{epoch: factor}` with 0-based epochs; a factor holds from its epoch until the next key.
            Epochs before the smallest key accumulate 1 batch (the dict gets the entry `0: 1`, as in Lightning).

    The optimizer still steps on each epoch's last batch when the epoch length is not a multiple of the factor.
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        super().__init__()
        if not scheduling:
            raise TypeError("`GradientAccumulationScheduler(scheduling={})`: pass a non-empty {epoch: factor} dict, "
                            "e.g. {0: 1, 4: 2}.")
        if any(not _is_int(key) or key < 0 for key in scheduling):
            raise MisconfigurationException(
                f"Epoch should be an int greater than or equal to 0. Got {list(scheduling.keys())}. The keys of "
                "`scheduling` are 0-based epochs.")
        if any(not _is_int(value) or value < 1 for value in scheduling.values()):
            raise MisconfigurationException(
                f"Accumulation factor should be an int greater than 0. Got {list(scheduling.values())}. The values "
                "of `scheduling` are numbers of batches to accumulate.")
        if min(scheduling) != 0:
            scheduling.update({0: 1})  # Lightning adds the first epochs' factor to the caller's dict itself
        self.scheduling = scheduling
        self.epochs = sorted(scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        """Whether any scheduled factor is above 1."""
        return any(value > 1 for value in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor in force at `epoch` (the value of the largest key <= epoch)."""
        for start in reversed(self.epochs):
            if epoch >= start:
                return self.scheduling[start]
        return 1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for manual "
                "optimization. Please remove the callback or switch to automatic optimization.")
        from fulmen.core.hooks import is_overridden
        from fulmen.core.module import LightningModule

        overrides_optimizer_hooks = any(is_overridden(name, pl_module, LightningModule)
                                        for name in ("optimizer_step", "optimizer_zero_grad"))
        if overrides_optimizer_hooks and self.going_to_accumulate_grad_batches():
            rank_zero_warn(
                "When using `Trainer(accumulate_grad_batches != 1)` and overriding "
                "`LightningModule.optimizer_{step,zero_grad}`, the hooks will not be called on every batch "
                "(rather, they are called on every optimization step).")
        # Lightning quirk: the factor persists on the Trainer, so a later fit that trains again is refused too.
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "You have set `accumulate_grad_batches` and are using the `GradientAccumulationScheduler` callback. "
                "Either remove `accumulate_grad_batches` from the Trainer or remove the callback.")

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)

