"""`StochasticWeightAveraging`: average the weights of the last epochs, with an SWA learning-rate schedule.

Lightning's behaviour, kept: from the SWA start epoch the LR scheduler is replaced by torch's `SWALR`; at the
start of every epoch from then on the running average takes in the weights the previous epoch ended with; at the
end of fit the average replaces the module's weights. A model with BatchNorm gets one more epoch that only runs
forward passes, so the BatchNorm statistics are recomputed for the averaged weights.
"""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR

from fulmen.callbacks.callback import Callback
from fulmen.callbacks.weight_averaging import detached_from_trainer
from fulmen.optimization.configure_optimizers import LRSchedulerConfig
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer

_AVG_FN = Callable[[Tensor, Tensor, Tensor], Tensor]


def _check_arguments(swa_lrs: Any, swa_epoch_start: Any, annealing_epochs: Any, annealing_strategy: Any,
                     avg_fn: Any, device: Any) -> None:
    start_error = (f"`swa_epoch_start={swa_epoch_start!r}` is invalid: pass an epoch number >= 1 (int) or a "
                   "fraction of `max_epochs` between 0 and 1 (float).")
    if isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)):
        raise MisconfigurationException(start_error)
    if isinstance(swa_epoch_start, int) and swa_epoch_start < 1:
        raise MisconfigurationException(start_error)
    if isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1:
        raise MisconfigurationException(start_error)
    # Lightning accepts only floats (an int such as 1 is refused too).
    valid_list = isinstance(swa_lrs, list) and all(isinstance(lr, float) and lr > 0 for lr in swa_lrs)
    if not (isinstance(swa_lrs, float) and swa_lrs > 0) and not valid_list:
        raise MisconfigurationException(
            f"`swa_lrs={swa_lrs!r}` is invalid: pass a positive float (e.g. 0.05), or a list of positive floats, "
            "one per parameter group of the optimizer.")
    if isinstance(annealing_epochs, bool) or not isinstance(annealing_epochs, int) or annealing_epochs < 0:
        raise MisconfigurationException(
            f"`annealing_epochs={annealing_epochs!r}` is invalid: pass the number of annealing epochs as an int >= 0.")
    if annealing_strategy not in ("cos", "linear"):
        raise MisconfigurationException(
            f"`annealing_strategy={annealing_strategy!r}` is invalid: pass 'cos' or 'linear'.")
    if avg_fn is not None and not callable(avg_fn):
        raise MisconfigurationException(
            "`avg_fn` must be callable as `avg_fn(averaged_param, model_param, num_averaged)`, or None for the "
            "equal-weight average.")
    if device is not None and not isinstance(device, (torch.device, str)):
        raise MisconfigurationException(
            f"`device={device!r}` is invalid: pass a `torch.device`, a device string such as 'cpu', or None for the "
            "module's device.")


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018), as Lightning's callback.

    Args:
        swa_lrs: the SWA learning rate: one float for every parameter group, or a list with one per group.
        swa_epoch_start: the epoch SWA starts: an int counts from 1; a float in [0, 1] is the fraction of
            `max_epochs` (`int(swa_epoch_start * max_epochs)`).
        annealing_epochs: how many epochs `SWALR` takes to anneal from the current LR to `swa_lrs`.
        annealing_strategy: "cos" or "linear" annealing.
        avg_fn: `avg_fn(averaged_param, model_param, num_averaged)` returns the new average; None averages
            all SWA epochs with equal weight.
        device: where the averaged copy of the model lives; None keeps it on the module's device.
    """

    def __init__(
        self,
        swa_lrs: Union[float, list[float]],
        swa_epoch_start: Union[int, float] = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: Literal["cos", "linear"] = "cos",
        avg_fn: Optional[_AVG_FN] = None,
        device: Optional[Union[torch.device, str]] = torch.device("cpu"),
    ) -> None:
        _check_arguments(swa_lrs, swa_epoch_start, annealing_epochs, annealing_strategy, avg_fn, device)
        self.n_averaged: Optional[Tensor] = None
        self.momenta: dict[nn.modules.batchnorm._BatchNorm, Optional[float]] = {}
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn or self.avg_fn
        self._device = device
        self._model_contains_batch_norm: Optional[bool] = None
        self._average_model: Any = None
        self._initialized = False
        self._swa_scheduler: Optional[SWALR] = None
        self._scheduler_state: Optional[dict] = None
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self._max_epochs = -1
        self._accumulate_grad_batches = 1

    @property
    def swa_start(self) -> int:
        """The first SWA epoch, 0-based (known once fit started when `swa_epoch_start` is a fraction)."""
        if not isinstance(self._swa_epoch_start, int):
            raise RuntimeError("`swa_start` is known once `fit` started: `swa_epoch_start` is a fraction of "
                               "`max_epochs`.")
        return max(self._swa_epoch_start - 1, 0)

    @property
    def swa_end(self) -> Union[int, float]:
        """The last SWA epoch, 0-based (infinite with `max_epochs=-1`)."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: LightningModule) -> bool:
        return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in pl_module.modules())

    # -- fit ------------------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        with detached_from_trainer(pl_module):
            self._average_model = deepcopy(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException(
                f"StochasticWeightAveraging works with exactly 1 optimizer; `configure_optimizers` returned "
                f"{len(trainer.optimizers)}. Return a single optimizer or remove the callback.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException(
                "StochasticWeightAveraging supports at most 1 LR scheduler (it replaces it with SWALR); "
                f"`configure_optimizers` returned {len(trainer.lr_scheduler_configs)}.")
        max_epochs = trainer.max_epochs
        if isinstance(self._swa_epoch_start, float):
            if max_epochs == -1:
                raise MisconfigurationException(
                    "`swa_epoch_start` as a fraction needs a finite `max_epochs`; with `max_epochs=-1` pass the "
                    "start epoch as an int.")
            self._swa_epoch_start = int(max_epochs * self._swa_epoch_start)
        groups = len(trainer.optimizers[0].param_groups)
        if isinstance(self._swa_lrs, list) and len(self._swa_lrs) != groups:
            raise MisconfigurationException(
                f"`swa_lrs` has {len(self._swa_lrs)} values but the optimizer has {groups} parameter groups: pass "
                "one learning rate per group, or a single float for all of them.")
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        self._max_epochs = max_epochs
        if self._scheduler_state is not None:
            self._clear_schedulers(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # One more epoch to recompute the BatchNorm statistics of the averaged weights (Lightning extends
        # `max_epochs` at fit start; fulmen's fit loop exists from `on_train_start`).
        if self._model_contains_batch_norm and self._max_epochs != -1:
            trainer.fit_loop.max_epochs += 1

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        in_swa = self.swa_start <= epoch <= self.swa_end
        if not self._initialized and in_swa:
            self._initialized = True
            self._start_swa(trainer, pl_module)
        if in_swa and epoch > self._latest_update_epoch:
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch
        if self._max_epochs != -1 and epoch == self.swa_end + 1:
            # The BatchNorm epoch: the averaged weights go in, the statistics restart, and the optimizer does not
            # step until the last batch (Lightning quirk: that one step still applies the gradients left from the
            # last SWA epoch, since this epoch neither zeroes nor computes new ones).
            self.transfer_weights(self._average_model, pl_module)
            self.reset_batch_norm_and_save_state(pl_module)
            num_batches = trainer.num_training_batches
            if not isinstance(num_batches, int):
                raise MisconfigurationException(
                    "StochasticWeightAveraging's BatchNorm epoch needs a training dataloader with a length; "
                    "iterable-style datasets without `__len__` are not supported.")
            fit_loop = trainer.fit_loop
            fit_loop.skip_backward = True
            self._accumulate_grad_batches = fit_loop.accumulate
            fit_loop.accumulate = num_batches + 1

    def _start_swa(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._average_model = self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        if isinstance(self._swa_lrs, float):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        # Lightning passes `last_epoch=max_epochs` (including the BatchNorm epoch) for cosine annealing.
        last_epoch = trainer.fit_loop.max_epochs if self._annealing_strategy == "cos" else -1
        self._swa_scheduler = SWALR(optimizer, swa_lr=self._swa_lrs, anneal_epochs=self._annealing_epochs,
                                    anneal_strategy=self._annealing_strategy, last_epoch=last_epoch)
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            rank_zero_warn("StochasticWeightAveraging starts after `swa_start` without its state from a "
                           "checkpoint: the average begins now. Resume from a checkpoint saved with this callback "
                           "to continue an interrupted average.")
        swa_config = LRSchedulerConfig(self._swa_scheduler)
        configs = trainer.lr_scheduler_configs
        if configs:
            current = configs[0]
            if current.interval != "epoch" or current.frequency != 1:
                rank_zero_warn(f"StochasticWeightAveraging steps its SWALR every epoch; the replaced scheduler "
                               f"stepped with interval={current.interval!r}, frequency={current.frequency}.")
            rank_zero_info(f"Swapping scheduler `{type(current.scheduler).__name__}` for `SWALR`")
            configs[0] = swa_config
        else:
            configs.append(swa_config)
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.fit_loop.skip_backward = False

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epochs_done = trainer.current_epoch
        if self._model_contains_batch_norm and self._max_epochs != -1 and epochs_done - 1 == self.swa_end + 1:
            trainer.fit_loop.accumulate = self._accumulate_grad_batches
            trainer.fit_loop.max_epochs -= 1
            self.reset_momenta()
        elif epochs_done - 1 == self.swa_end or self._max_epochs == -1:
            if self._average_model is not None:
                self.transfer_weights(self._average_model, pl_module)

    # -- the averaging ------------------------------------------------------------------------------

    @staticmethod
    def transfer_weights(src_pl_module: nn.Module, dst_pl_module: nn.Module) -> None:
        """Copy the parameters (not the buffers) of `src_pl_module` into `dst_pl_module`."""
        for source, target in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
            target.detach().copy_(source.to(target.device))

    def reset_batch_norm_and_save_state(self, pl_module: LightningModule) -> None:
        """Restart every BatchNorm's running statistics as a cumulative average (momentum None), remembering
        the momenta for `reset_momenta`."""
        self.momenta = {}
        for module in pl_module.modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            module.running_mean = torch.zeros_like(module.running_mean, device=pl_module.device)
            module.running_var = torch.ones_like(module.running_var, device=pl_module.device)
            self.momenta[module] = module.momentum
            module.momentum = None
            module.num_batches_tracked *= 0

    def reset_momenta(self) -> None:
        """Give the BatchNorm layers back the momenta `reset_batch_norm_and_save_state` replaced."""
        for module, momentum in self.momenta.items():
            module.momentum = momentum

    @staticmethod
    def update_parameters(average_model: nn.Module, model: nn.Module, n_averaged: Tensor, avg_fn: _AVG_FN) -> None:
        """Fold `model`'s parameters into `average_model` (the first call copies them) and count it."""
        for averaged, current in zip(average_model.parameters(), model.parameters()):
            device = averaged.device
            averaged_ = averaged.detach()
            current_ = current.detach().to(device)
            averaged_.copy_(current_ if n_averaged == 0 else avg_fn(averaged_, current_, n_averaged.to(device)))
        n_averaged += 1

    @staticmethod
    def avg_fn(averaged_model_parameter: Tensor, model_parameter: Tensor, num_averaged: Tensor) -> Tensor:
        """The equal-weight running average."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    # -- checkpoints ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": 0 if self.n_averaged is None else self.n_averaged.item(),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._init_n_averaged = state_dict["n_averaged"]
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        if self._average_model is not None and state_dict["average_model_state"] is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        own = checkpoint.get("callbacks", {}).get(self.state_key) or {}
        if trainer.state.fn != TrainerFn.FITTING or own.get("scheduler_state") is None:
            return
        # Saved mid-SWA, the checkpoint's only LR scheduler state is SWALR's, which this callback restores from its
        # own state; the configured scheduler is dropped, as it was when SWA started.
        checkpoint["lr_schedulers"] = []
        self._clear_schedulers(trainer)

    @staticmethod
    def _clear_schedulers(trainer: Trainer) -> None:
        trainer.lr_scheduler_configs.clear()
