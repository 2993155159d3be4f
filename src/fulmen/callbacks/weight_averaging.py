"""`WeightAveraging` and `EMAWeightAveraging`: keep an average of the weights seen during training.

Lightning 2.6's behaviour, kept: the average is a `torch.optim.swa_utils.AveragedModel`, updated after the
optimizer steps (and epochs) that `should_update` picks; validation runs with the averaged weights; a checkpoint
stores the averaged weights as its `state_dict` (so `load_from_checkpoint` gives the average) and the current ones
under `current_model_state`; at the end of fit the module keeps the averaged weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from fulmen.callbacks.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer

_RUN_LINKS = ("_trainer", "_log_router")  # what ties a LightningModule to its Trainer's run


@contextmanager
def detached_from_trainer(module: torch.nn.Module) -> Iterator[None]:
    """While inside, `module` holds no reference to its Trainer, so `deepcopy(module)` copies the model only."""
    saved = {name: module.__dict__[name] for name in _RUN_LINKS if module.__dict__.get(name) is not None}
    for name in saved:
        object.__setattr__(module, name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            object.__setattr__(module, name, value)


def _overrides_configure_model(pl_module: Any) -> bool:
    from fulmen.core.module import LightningModule

    return type(pl_module).configure_model is not LightningModule.configure_model


class WeightAveraging(Callback):
    """Averages the module's weights over training with `torch.optim.swa_utils.AveragedModel`.

    Subclass it and override `should_update` to choose when the average takes in the current weights (by default:
    after every optimizer step). Extra keyword arguments (`avg_fn`, `multi_avg_fn`, ...) go to `AveragedModel`.

    Args:
        device: where the averaged copy lives; None keeps it on the module's device.
        use_buffers: average the buffers too (True), or average parameters only and keep the buffers of the
            module being trained (False).
        **kwargs: passed to `AveragedModel`.
    """

    def __init__(self, device: Optional[Union[torch.device, str, int]] = None, use_buffers: bool = True,
                 **kwargs: Any) -> None:
        self._device: Optional[Union[torch.device, int]] = torch.device(device) if isinstance(device, str) else device
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: Optional[AveragedModel] = None
        # Optimizer steps done at the last update: 0 makes the first update come after the first optimizer step.
        self._latest_update_step = 0
        # The epoch after which the last update happened; -1 lets an update follow the first epoch (epoch 0).
        self._latest_update_epoch = -1

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Whether the average takes in the current weights now.

        Called after each optimizer step with the 0-based `step_idx`, and after each training epoch with the
        0-based `epoch_idx` (the other one is None). The default updates after every optimizer step.
        """
        return step_idx is not None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        device = self._device or pl_module.device
        if _overrides_configure_model(pl_module):
            rank_zero_warn("WeightAveraging is used with a model that overrides `configure_model`: the layers are "
                           "created now to copy them, and they are not sharded, so memory may run out.")
            pl_module.configure_model()
        with detached_from_trainer(pl_module):
            self._average_model = AveragedModel(model=pl_module, device=device, use_buffers=self._use_buffers,
                                                **self._kwargs)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        steps = trainer.global_step
        # `step_idx` is 0-based like `epoch_idx`: 0 after the first optimizer step.
        if steps > self._latest_update_step and self.should_update(step_idx=steps - 1):
            self._average_model.update_parameters(pl_module)
            self._latest_update_step = steps

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._copy_average_to_current(pl_module)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)

    # -- checkpoints ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """The checkpoint's `state_dict` becomes the averaged weights; the current ones go to
        `current_model_state` and the `AveragedModel`'s own entries (`n_averaged`) to `averaging_state`."""
        if self._average_model is None:
            rank_zero_info("WeightAveraging: a checkpoint saved outside `fit` does not hold the averaging state. "
                           "After fit, the module's weights (saved in `state_dict`) are already the average.")
            return
        average_state = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {name[len("module."):]: value for name, value in average_state.items()
                                    if name.startswith("module.")}
        checkpoint["averaging_state"] = {name: value for name, value in average_state.items()
                                         if not name.startswith("module.")}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            rank_zero_warn("WeightAveraging: a checkpoint loaded outside `fit` cannot restore the averaging state; "
                           "the model gets the averaged weights saved in `state_dict`. Remove the callback to silence "
                           "this warning when testing or predicting.")
            return
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            rank_zero_info("WeightAveraging: the module resumes from `current_model_state`, the average from "
                           "`state_dict`.")
            average_state = {"module." + name: value for name, value in checkpoint["state_dict"].items()}
            average_state.update(checkpoint["averaging_state"])
            self._average_model.load_state_dict(average_state)
            # The module trains on from the current weights: load them now, and have the Trainer's weight restore
            # (whether it runs before or after this hook) load them too.
            pl_module.load_state_dict(checkpoint["current_model_state"])
            checkpoint["state_dict"] = checkpoint["current_model_state"]
        else:
            rank_zero_warn("The checkpoint was not saved with WeightAveraging: the current and the averaged model both "
                           "start from its `state_dict`.")
            self._average_model.module.load_state_dict(deepcopy(checkpoint["state_dict"]), strict=False)

    # -- moving weights -------------------------------------------------------------------------------

    def _pairs(self, pl_module: LightningModule) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        average = self._average_model.module
        return zip(itertools.chain(average.parameters(), average.buffers()),
                   itertools.chain(pl_module.parameters(), pl_module.buffers()))

    def _swap_models(self, pl_module: LightningModule) -> None:
        """Exchange the averaged and the current weights (parameters and buffers)."""
        for average, current in self._pairs(pl_module):
            kept = average.data.clone()
            average.data.copy_(current.data)
            current.data.copy_(kept)

    def _copy_average_to_current(self, pl_module: LightningModule) -> None:
        for average, current in self._pairs(pl_module):
            current.data.copy_(average.data)


class EMAWeightAveraging(WeightAveraging):
    """An exponential moving average of the weights: `average = decay * average + (1 - decay) * current`.

    Args:
        device: where the averaged copy lives; None keeps it on the module's device.
        use_buffers: average the buffers too (True) or parameters only (False).
        decay: the EMA decay.
        update_every_n_steps: update after every n-th optimizer step (counted from 0); 0 turns step updates off.
        update_starting_at_step: no step updates before this 0-based optimizer step.
        update_starting_at_epoch: also update after each epoch from this 0-based epoch on (None: never per epoch).
        **kwargs: passed to `AveragedModel`.
    """

    def __init__(self, device: Optional[Union[torch.device, str, int]] = None, use_buffers: bool = True,
                 decay: float = 0.999, update_every_n_steps: int = 1, update_starting_at_step: Optional[int] = None,
                 update_starting_at_epoch: Optional[int] = None, **kwargs: Any) -> None:
        if "avg_fn" in kwargs:
            raise TypeError("EMAWeightAveraging builds `avg_fn` from `decay`: pass `decay=...`, or use "
                            "`WeightAveraging(avg_fn=...)` for another average.")
        super().__init__(device=device, use_buffers=use_buffers, **kwargs, avg_fn=get_ema_avg_fn(decay=decay))
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            due = self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0
            if started and due:
                return True
        if epoch_idx is not None:
            return self.update_starting_at_epoch is not None and epoch_idx >= self.update_starting_at_epoch
        return False
