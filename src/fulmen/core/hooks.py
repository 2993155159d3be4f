"""The hook catalogue: every hook a LightningModule or LightningDataModule may override, as no-op defaults.

Owns: hook names, signatures and default behaviour. Does not own: when hooks run (loops) or in which
order callbacks and modules are called (`trainer/hook_dispatch.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fulmen.utilities.apply_func import move_data_to_device
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from torch.optim import Optimizer


class ModelHooks:
    """Hooks a LightningModule can override to act at points of the fit/validate/test/predict runs."""

    def on_fit_start(self) -> None:
        """Called at the very beginning of fit."""

    def on_fit_end(self) -> None:
        """Called at the very end of fit."""

    def on_train_start(self) -> None:
        """Called at the beginning of training, after the sanity check."""

    def on_train_end(self) -> None:
        """Called at the end of training, before the logger is finalized."""

    def on_validation_start(self) -> None:
        """Called at the beginning of validation."""

    def on_validation_end(self) -> None:
        """Called at the end of validation."""

    def on_test_start(self) -> None:
        """Called at the beginning of testing."""

    def on_test_end(self) -> None:
        """Called at the end of testing."""

    def on_predict_start(self) -> None:
        """Called at the beginning of predicting."""

    def on_predict_end(self) -> None:
        """Called at the end of predicting."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Called before the training batch runs; return -1 to skip the rest of the epoch."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Called after the training batch; `outputs` is a dict holding the detached `loss`."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a validation batch."""

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a validation batch with what `validation_step` returned."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a test batch."""

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a test batch with what `test_step` returned."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before a predict batch."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after a predict batch with what `predict_step` returned."""

    def on_validation_model_zero_grad(self) -> None:
        """Called before validation inside fit; frees gradients so validation has the memory."""
        self.zero_grad(set_to_none=True)  # type: ignore[attr-defined]

    def on_validation_model_eval(self) -> None:
        """Put the model in eval mode before validation."""
        self.trainer.lightning_module.eval()  # type: ignore[attr-defined]

    def on_validation_model_train(self) -> None:
        """Restore the model's train mode after validation."""
        self.trainer.lightning_module.train()  # type: ignore[attr-defined]

    def on_test_model_eval(self) -> None:
        """Put the model in eval mode before testing."""
        self.trainer.lightning_module.eval()  # type: ignore[attr-defined]

    def on_test_model_train(self) -> None:
        """Restore the model's train mode after testing."""
        self.trainer.lightning_module.train()  # type: ignore[attr-defined]

    def on_predict_model_eval(self) -> None:
        """Put the model in eval mode before predicting."""
        self.trainer.lightning_module.eval()  # type: ignore[attr-defined]

    def on_train_epoch_start(self) -> None:
        """Called at the start of each training epoch."""

    def on_train_epoch_end(self) -> None:
        """Called at the end of each training epoch, after that epoch's validation."""

    def on_validation_epoch_start(self) -> None:
        """Called at the start of the validation epoch."""

    def on_validation_epoch_end(self) -> None:
        """Called at the end of the validation epoch."""

    def on_test_epoch_start(self) -> None:
        """Called at the start of the test epoch."""

    def on_test_epoch_end(self) -> None:
        """Called at the end of the test epoch."""

    def on_predict_epoch_start(self) -> None:
        """Called at the start of the predict epoch."""

    def on_predict_epoch_end(self) -> None:
        """Called at the end of the predict epoch."""

    def on_before_zero_grad(self, optimizer: Optimizer) -> None:
        """Called before `optimizer.zero_grad()`."""

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Called before `loss.backward()`."""

    def on_after_backward(self) -> None:
        """Called after `loss.backward()` and before the optimizer step."""

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Called before `optimizer.step()`, with unscaled gradients, before clipping."""

    def configure_sharded_model(self) -> None:
        """Deprecated name of `configure_model`."""

    def configure_model(self) -> None:
        """Create modules here to build them directly on the target device, or sharded."""


class DataHooks:
    """Hooks that provide and move data; shared by LightningModule and LightningDataModule."""

    prepare_data_per_node: bool = True
    # With several processes, a rank whose dataloader is empty while others' are not is an error unless this is
    # True on the module or the datamodule (then that rank runs no batches, with a warning).
    allow_zero_length_dataloader_with_multiple_devices: bool = False

    def prepare_data(self) -> None:
        """Download or write data once per node, before `setup`; do not set state here."""

    def setup(self, stage: str) -> None:
        """Build what each process needs for `stage` (`"fit"`, `"validate"`, `"test"` or `"predict"`)."""

    def teardown(self, stage: str) -> None:
        """Release what `setup` built, at the end of `stage`."""

    def train_dataloader(self) -> Any:
        """Return the training dataloader."""
        raise MisconfigurationException(
            "`train_dataloader` must be implemented to train: override it on your LightningModule or "
            "LightningDataModule, or pass `train_dataloaders=` to `Trainer.fit`."
        )

    def val_dataloader(self) -> Any:
        """Return the validation dataloader(s)."""
        raise MisconfigurationException("`val_dataloader` must be implemented to validate.")

    def test_dataloader(self) -> Any:
        """Return the test dataloader(s)."""
        raise MisconfigurationException("`test_dataloader` must be implemented to test.")

    def predict_dataloader(self) -> Any:
        """Return the predict dataloader(s)."""
        raise MisconfigurationException("`predict_dataloader` must be implemented to predict.")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move `batch` to `device`; override for custom batch types."""
        return move_data_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter or augment the batch before it moves to the device."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter or augment the batch after it moved to the device."""
        return batch


class CheckpointHooks:
    """Hooks that add to or read from the checkpoint dict."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore extra state from `checkpoint`, before the model's weights are loaded."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add extra state to `checkpoint` before it is written."""


def is_overridden(name: str, instance: object, base: type) -> bool:
    """Whether `instance`'s class (or the instance itself) replaces `base.name`; set to None on the instance
    (`model.validation_step = None`, a common way to turn a step off) it counts as not defined, as in Lightning."""
    instance_dict = getattr(instance, "__dict__", {})
    if name in instance_dict:
        return instance_dict[name] is not None
    attribute = getattr(type(instance), name, None)
    default = getattr(base, name, None)
    if attribute is None or default is None:
        return attribute is not None
    return getattr(attribute, "__code__", attribute) is not getattr(default, "__code__", default)
