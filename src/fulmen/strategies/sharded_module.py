"""ShardedModuleMethods: the step and the checkpoints of a module sharded with FSDP2, shared by FSDPStrategy and
ModelParallelStrategy (which shards in the user's `configure_model`).

Owns: running `*_step` through the root module's call (so FSDP's root hooks run even when the step calls only
submodules) and checkpoints as one full file written by rank 0 or a `torch.distributed.checkpoint` directory
(`_state_dict_type` "full" or "sharded"; see `fsdp_checkpoint.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fulmen.strategies import fsdp_checkpoint
from fulmen.trainer.state import TrainerFn


class ShardedModuleMethods:
    """Mixed into a `ProcessGroupStrategy` whose module may be an FSDP2 module; needs `_state_dict_type`."""

    _state_dict_type: str
    _module: Any

    # -- the step -----------------------------------------------------------------------------------

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """`training_step` through the root module's call, so FSDP's root hooks run (lazy init, input casting)
        even when the step calls only submodules."""
        return self._through_root("training_step", self.precision_plugin.train_step_context, args, kwargs)

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._through_root("validation_step", self.precision_plugin.val_step_context, args, kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._through_root("test_step", self.precision_plugin.test_step_context, args, kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._through_root("predict_step", self.precision_plugin.predict_step_context, args, kwargs)

    def _through_root(self, name: str, context: Any, args: tuple, kwargs: dict) -> Any:
        module = self._module
        if not is_sharded(module):
            with context():
                return getattr(module, name)(*args, **kwargs)
        original_forward = module.forward
        step = getattr(module, name)

        def redirected(*inputs: Any, **options: Any) -> Any:
            module.forward = original_forward  # `self(x)` inside the step is the real forward
            return step(*inputs, **options)

        with context():
            module.forward = redirected
            try:
                return module(*args, **kwargs)
            finally:
                module.forward = original_forward

    # -- checkpoints ---------------------------------------------------------------------------------

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """Full: the whole state dict on rank 0 (empty elsewhere); sharded: this rank's DTensor shards."""
        return fsdp_checkpoint.model_state(self._module, self._state_dict_type == "full")

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Full: a plain optimizer state dict (parameter ids) on rank 0; sharded: this rank's shards by name."""
        optimizer = getattr(optimizer, "_optimizer", optimizer)
        return fsdp_checkpoint.optimizer_state(self._module, optimizer, self._state_dict_type == "full")

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Full: rank 0 writes one file through `checkpoint_io`; sharded: every rank writes its shard into a
        directory (a temporary one renamed into place, so a failed save keeps the previous checkpoint)."""
        if storage_options is not None:
            raise TypeError(f"`{type(self).__name__}.save_checkpoint(storage_options=...)` is not supported; remove it.")
        path = self.broadcast(str(filepath))
        if self._state_dict_type == "full":
            if self.is_global_zero:
                fsdp_checkpoint.prepare_full_target(path)
                self.checkpoint_io.save_checkpoint(checkpoint, path)
            return
        fsdp_checkpoint.save_sharded(checkpoint, path, self)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Read a full file (every rank) or a sharded directory (each rank its shards, resharded to this world
        size); module and optimizer states are applied by `load_model_state_dict`/`load_optimizer_state_dict`."""
        path = self.broadcast(str(checkpoint_path))
        if fsdp_checkpoint.is_sharded_checkpoint(path):
            fitting = self._module.trainer.state.fn == TrainerFn.FITTING
            return fsdp_checkpoint.load_sharded(path, self._module, self.optimizers if fitting else [],
                                                weights_only)
        return self.checkpoint_io.load_checkpoint(path, weights_only=weights_only)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        fsdp_checkpoint.load_model_state(self._module, checkpoint["state_dict"], strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"]):
            fsdp_checkpoint.load_optimizer_state(self._module, optimizer, state)

    def remove_checkpoint(self, filepath: Any) -> None:
        if self.is_global_zero:
            if fsdp_checkpoint.is_sharded_checkpoint(filepath):
                fsdp_checkpoint.remove_directory(filepath)
            else:
                self.checkpoint_io.remove_checkpoint(filepath)


def is_sharded(module: Any) -> bool:
    """Whether `module` itself was sharded with `fully_shard` (an FSDP2 root module)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)
