"""Layer synchronisation across processes: `Trainer(sync_batchnorm=True)` (Lightning's `TorchSyncBatchNorm`).

Owns: turning a model's BatchNorm layers into synchronised ones for a multi-process fit, and back.
On CUDA the layers become `torch.nn.SyncBatchNorm`. torch's SyncBatchNorm refuses CPU tensors (and
`DistributedDataParallel` refuses to wrap it on CPU), so on CPU they become `CPUSyncBatchNorm`, which
computes the same statistics with a differentiable all-reduce that gloo can run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

_ORIGINAL_CLASS = "_fulmen_batchnorm_class"
_ACCELERATED = ("cuda", "xpu", "hpu")


class LayerSync(ABC):
    """Wraps layers of a model with synchronisation logic for multi-process training."""

    @abstractmethod
    def apply(self, model: nn.Module) -> nn.Module:
        """Synchronise the layers of `model`; return the (possibly new) model."""

    @abstractmethod
    def revert(self, model: nn.Module) -> nn.Module:
        """Undo `apply`."""


class TorchSyncBatchNorm(LayerSync):
    """Compute BatchNorm statistics over the batches of every process; no effect with one process."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _replace_batchnorms(model, _to_sync)

    def revert(self, model: nn.Module) -> nn.Module:
        return _replace_batchnorms(model, _to_original)


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm for any input rank whose training statistics span every process of the group (gloo on CPU).

    In eval mode, or with a single process, it is a plain BatchNorm.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: object = None, device: object = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = self.process_group or (dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)
        if not self.training or group is None or dist.get_world_size(group) == 1:
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.size(1)
        dims = [0, *range(2, input.dim())]
        count = torch.full((1,), input.numel() // channels, dtype=input.dtype, device=input.device)
        # Sums (not means) are reduced so that ranks with different batch sizes weigh correctly; the
        # all-reduce is differentiable, so gradients flow through the global statistics as with SyncBatchNorm.
        totals = _AllReduceSum.apply(torch.cat([input.sum(dims), (input * input).sum(dims), count]), group)
        total = totals[-1]
        mean = totals[:channels] / total
        var = (totals[channels:2 * channels] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (total / (total - 1)), alpha=factor)
        shape = [1, channels] + [1] * (input.dim() - 2)
        output = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


class _AllReduceSum(torch.autograd.Function):
    """Sum over the group; the gradient of every rank's input is the sum of every rank's output gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


def _replace_batchnorms(module: nn.Module, convert) -> nn.Module:  # noqa: ANN001 - a converter function
    replaced = convert(module) if isinstance(module, _BatchNorm) else module
    for name, child in module.named_children():
        replaced.add_module(name, _replace_batchnorms(child, convert))
    return replaced


def _to_sync(layer: _BatchNorm) -> _BatchNorm:
    if isinstance(layer, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
        return layer
    tensor = next(iter([*layer.parameters(), *layer.buffers()]), None)
    on_accelerator = tensor is not None and tensor.device.type in _ACCELERATED
    target = nn.SyncBatchNorm if on_accelerator else CPUSyncBatchNorm
    synced = _copy_batchnorm(layer, target)
    setattr(synced, _ORIGINAL_CLASS, type(layer))
    return synced


def _to_original(layer: _BatchNorm) -> _BatchNorm:
    original = getattr(layer, _ORIGINAL_CLASS, None)
    return layer if original is None else _copy_batchnorm(layer, original)


def _copy_batchnorm(layer: _BatchNorm, target: type) -> _BatchNorm:
    """A `target` layer sharing `layer`'s parameters and buffers (the optimizer keeps working on the same tensors)."""
    new = target.__new__(target)
    nn.Module.__init__(new)
    for attribute in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
        setattr(new, attribute, getattr(layer, attribute))
    if isinstance(new, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
        new.process_group = None
    new.training = layer.training
    for name, parameter in layer._parameters.items():
        new.register_parameter(name, parameter)
    for name, buffer in layer._buffers.items():
        new.register_buffer(name, buffer)
    if hasattr(layer, "qconfig"):
        new.qconfig = layer.qconfig
    return new
