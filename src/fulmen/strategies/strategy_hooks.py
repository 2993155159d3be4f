"""The checkpoint methods and the `on_*` hooks of `Strategy` (a mixin, so `strategy.py` stays about placing
and driving the module). Each is called by the Trainer at Lightning's point; override them in a subclass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class StrategyCheckpointsAndHooks:
    """What a checkpoint holds and how it is written, read and removed; the strategy hooks."""

    is_global_zero: bool
    root_device: torch.device
    checkpoint_io: Any
    optimizers: list[torch.optim.Optimizer]
    _module: Any

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """What a checkpoint stores for `optimizer` (its `state_dict`)."""
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer: the wrapped one
        if hasattr(optimizer, "consolidate_state_dict"):  # ZeroRedundancyOptimizer: gathered on rank 0
            optimizer.consolidate_state_dict()
            return optimizer.state_dict() if self.is_global_zero else {}
        return optimizer.state_dict()

    # -- checkpoints --------------------------------------------------------------------------------

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The module's weights as a checkpoint stores them."""
        return self._module.state_dict()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Write `checkpoint` through `checkpoint_io` (on global rank 0 only)."""
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options=storage_options)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Read a checkpoint through `checkpoint_io`."""
        if self.root_device.type == "cuda":
            torch.cuda.empty_cache()
        return self.checkpoint_io.load_checkpoint(checkpoint_path, weights_only=weights_only)

    def remove_checkpoint(self, filepath: Any) -> None:
        """Delete a checkpoint through `checkpoint_io` (on global rank 0 only)."""
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(filepath)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        """Load the checkpoint's `state_dict` into the module."""
        self._module.load_state_dict(checkpoint["state_dict"], strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """Load the checkpoint's `optimizer_states` into `optimizers`, moving their state to the root device."""
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"]):
            optimizer.load_state_dict(state)
            _optimizer_state_to(optimizer, self.root_device)

    # -- hooks the Trainer calls --------------------------------------------------------------------

    def on_train_start(self) -> None:
        """Called when training starts (after the callbacks' and the module's hook)."""

    def on_train_end(self) -> None:
        """Called when training ends."""

    def on_validation_start(self) -> None:
        """Called when a validation loop starts."""

    def on_validation_end(self) -> None:
        """Called when a validation loop ends."""

    def on_test_start(self) -> None:
        """Called when testing starts."""

    def on_test_end(self) -> None:
        """Called when testing ends."""

    def on_predict_start(self) -> None:
        """Called when predicting starts."""

    def on_predict_end(self) -> None:
        """Called when predicting ends."""

    def on_train_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before each training batch (after the callbacks' and the module's hook)."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when a run fails, before the callbacks' `on_exception`."""


def _optimizer_state_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)
