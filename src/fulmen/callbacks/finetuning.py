"""BaseFinetuning and BackboneFinetuning: freeze parts of a model, then unfreeze them into new optimizer param groups.

The param groups the callback added are saved by parameter *name* in the checkpoint, so resuming rebuilds them on
the freshly configured optimizer before its saved state is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, Callable, Union

import torch
from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger(__name__)

Modules = Union[Module, Iterable[Union[Module, Iterable]]]


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default `lambda_func`: double the backbone learning rate every epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Base for finetuning callbacks: override `freeze_before_training` (called in `setup`, before
    `configure_optimizers`) and `finetune_function` (called at every training epoch start, per optimizer).

    Build the optimizer from the trainable parameters only (`filter(lambda p: p.requires_grad, ...)`); unfrozen
    modules then join it as new param groups through `unfreeze_and_add_param_group`.
    """

    def __init__(self) -> None:
        # {optimizer index: its param groups, with parameter names instead of tensors}
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._restarting = False

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        # Checkpoints of old Lightning versions hold the metadata itself.
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Restored state (`ckpt_path` or `load_state_dict`): the optimizers get the saved param groups back before
        # their states are loaded (Lightning loads them after `on_fit_start`).
        if self._restarting:
            self._restore_param_groups(trainer, pl_module)

    def _restore_param_groups(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restarting = False
        if not self._internal_optimizer_metadata:
            return
        named = dict(pl_module.named_parameters())
        for index, optimizer in enumerate(trainer.optimizers):
            groups = self._internal_optimizer_metadata.get(index)
            if groups is not None:
                optimizer.param_groups = self._apply_mapping_to_param_groups(groups, named)
                # Lightning leaves these frozen after a resume (the freeze in `setup` is never undone), so the
                # resumed run would not train them; they were trainable when saved.
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        param.requires_grad = True

    # -- helpers users call from their overrides -------------------------------------------------------

    @staticmethod
    def flatten_modules(modules: Modules) -> list[Module]:
        """The leaf modules of `modules` (a module or a nested iterable of them), plus the parents that own
        parameters directly."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable):
            found: list[Module] = []
            for module in modules:
                found.extend(BaseFinetuning.flatten_modules(module))
            candidates: Iterable[Module] = found
        else:
            candidates = modules.modules()
        return [module for module in candidates if not list(module.children()) or module._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Generator:
        """Yield the parameters of `modules` whose `requires_grad` equals `requires_grad` (BatchNorm layers'
        only if `train_bn`)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Unfreeze every parameter of `modules` (BatchNorm layers track running stats again)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        """Freeze the parameters `module` owns directly (a BatchNorm layer stops tracking running stats)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze `modules`; with `train_bn`, their BatchNorm layers stay trainable."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: torch.optim.Optimizer, params: Iterable) -> list:
        """The parameters of `params` that are not already in `optimizer` (those that are are skipped, with a
        warning)."""
        # Compared by identity: Lightning compares values (`torch.equal`), which also drops a different parameter
        # that happens to hold equal values (e.g. two zero-initialised biases).
        present = {id(param) for group in optimizer.param_groups for param in group["params"]}
        kept, skipped = [], 0
        for param in params:
            if id(param) in present:
                skipped += 1
            else:
                kept.append(param)
        if skipped:
            rank_zero_warn(
                "The provided params to be frozen already exist within another group of this optimizer. Those "
                "parameters will be skipped.\nHINT: build the optimizer in `configure_optimizers` from the trainable "
                f"parameters only: {type(optimizer).__name__}(filter(lambda p: p.requires_grad, self.parameters()), "
                "...)")
        return kept

    @staticmethod
    def unfreeze_and_add_param_group(modules: Modules, optimizer: torch.optim.Optimizer, lr: float | None = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Unfreeze `modules` and add their trainable parameters (not already optimized) to `optimizer` as a new
        param group, with learning rate `lr`, or the first group's learning rate / `initial_denom_lr`."""
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] if lr is None else float(lr)
        denominator = initial_denom_lr if lr is None else 1.0
        params = BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        params = BaseFinetuning.filter_on_optimizer(optimizer, params)
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr / denominator})

    # -- the hooks ----------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.freeze_before_training(pl_module)

    @staticmethod
    def _apply_mapping_to_param_groups(param_groups: list[dict[str, Any]], mapping: dict) -> list[dict[str, Any]]:
        """Copies of `param_groups` with each parameter replaced by `mapping[parameter]` (tensor <-> name)."""
        return [{**{key: value for key, value in group.items() if key != "params"},
                 "params": [mapping[param] for param in group["params"]]} for group in param_groups]

    def _store(self, pl_module: LightningModule, opt_idx: int, num_param_groups: int,
               current_param_groups: list[dict[str, Any]]) -> None:
        names = {param: name for name, param in pl_module.named_parameters()}
        if opt_idx not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[opt_idx] = self._apply_mapping_to_param_groups(current_param_groups,
                                                                                             names)
        elif num_param_groups != len(current_param_groups):
            self._internal_optimizer_metadata[opt_idx].extend(
                self._apply_mapping_to_param_groups(current_param_groups[num_param_groups:], names))

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            num_param_groups = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, index, num_param_groups, optimizer.param_groups)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Override: unfreeze modules at the epochs you choose (called at every training epoch start)."""
        raise NotImplementedError(f"{type(self).__name__} must override `finetune_function(pl_module, epoch, "
                                  "optimizer)` with its unfreezing logic.")

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        """Override: freeze the modules to finetune later (called in `setup`, before `configure_optimizers`)."""
        raise NotImplementedError(f"{type(self).__name__} must override `freeze_before_training(pl_module)` with "
                                  "its freezing logic.")


class BackboneFinetuning(BaseFinetuning):
    """Freeze `pl_module.backbone`, unfreeze it at `unfreeze_backbone_at_epoch` as a new param group, then raise its
    learning rate each epoch by `lambda_func`.

    Args:
        unfreeze_backbone_at_epoch: the epoch at which the backbone joins the optimizer.
        lambda_func: `epoch -> factor`; each later epoch the backbone lr becomes `lambda_func(epoch + 1) *` its
            previous value.
        backbone_initial_ratio_lr: the backbone's first lr as a fraction of the first param group's lr.
        backbone_initial_lr: the backbone's first lr (wins over `backbone_initial_ratio_lr`).
        should_align: cap the backbone lr at the first group's lr once it would exceed it.
        initial_denom_lr: no effect here (the backbone lr is always given explicitly); as in Lightning.
        train_bn: whether the backbone's BatchNorm parameters join the backbone's param group.
        verbose: log the lrs at each change (logger `fulmen.callbacks.finetuning`, INFO).
        rounding: decimals of the logged lrs.
    """

    def __init__(self, unfreeze_backbone_at_epoch: int = 10, lambda_func: Callable = multiplicative,
                 backbone_initial_ratio_lr: float = 10e-2, backbone_initial_lr: float | None = None,
                 should_align: bool = True, initial_denom_lr: float = 10.0, train_bn: bool = True,
                 verbose: bool = False, rounding: int = 12) -> None:
        super().__init__()
        if initial_denom_lr != 10.0:
            # Lightning passes it on, but with an explicit backbone lr it divides nothing: say so, not ignore it.
            rank_zero_warn(f"`BackboneFinetuning(initial_denom_lr={initial_denom_lr})` has no effect: the backbone "
                           "learning rate is `backbone_initial_lr`, or the current lr * `backbone_initial_ratio_lr` "
                           "(as in Lightning). Set one of those instead.")
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata,
                "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not isinstance(getattr(pl_module, "backbone", None), Module):
            raise MisconfigurationException("The LightningModule should have a nn.Module `backbone` attribute: "
                                            "BackboneFinetuning freezes and unfreezes `pl_module.backbone`.")
        super().on_fit_start(trainer, pl_module)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(pl_module.backbone)  # BatchNorm stays trainable whatever `train_bn` says (as in Lightning)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if epoch < self.unfreeze_backbone_at_epoch:
            return
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = (self.backbone_initial_lr if self.backbone_initial_lr is not None
                           else current_lr * self.backbone_initial_ratio_lr)
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                                              initial_denom_lr=self.initial_denom_lr)
        else:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
        self.previous_backbone_lr = backbone_lr
        if self.verbose:
            log.info(f"Current lr: {round(current_lr, self.rounding)}, "
                     f"Backbone lr: {round(backbone_lr, self.rounding)}")
