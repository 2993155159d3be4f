"""Type aliases for annotating LightningModule hooks, under Lightning's names (`utilities.types`).

Aliases are plain `typing` objects, so annotations written for Lightning type-check the same here.
`LRSchedulerTypeTuple` is a real tuple of classes, usable with `isinstance`.
"""

from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Optional, Protocol, TypedDict, Union, runtime_checkable

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from fulmen.optimization.configure_optimizers import LRSchedulerConfig

try:  # Python >= 3.11
    from typing import NotRequired, Required
except ImportError:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired, Required

__all__ = [
    "EVAL_DATALOADERS", "STEP_OUTPUT", "TRAIN_DATALOADERS", "DistributedDataParallel", "LRSchedulerConfig",
    "LRSchedulerConfigType", "LRSchedulerPLType", "LRSchedulerType", "LRSchedulerTypeTuple", "LRSchedulerTypeUnion",
    "OptimizerConfig", "OptimizerLRScheduler", "OptimizerLRSchedulerConfig",
]

# What a step method may return: a loss tensor, a dict (with "loss" for training), or None to skip.
STEP_OUTPUT = Optional[Union[Tensor, Mapping[str, Any]]]
# Any iterable of batches, or a list/dict of them.
TRAIN_DATALOADERS = Any
EVAL_DATALOADERS = Any


@runtime_checkable
class DistributedDataParallel(Protocol):
    """Structural type of `torch.nn.parallel.DistributedDataParallel` (anything with its `no_sync`)."""

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids: Optional[list[Union[int, torch.device]]] = None,
        output_device: Optional[Union[int, torch.device]] = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: Optional[Any] = None,
        bucket_cap_mb: int = 25,
        find_unused_parameters: bool = False,
        check_reduction: bool = False,
        gradient_as_bucket_view: bool = False,
        static_graph: bool = False,
    ) -> None: ...

    @contextmanager
    def no_sync(self) -> Generator: ...


LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]
LRSchedulerPLType = Union[LRScheduler, ReduceLROnPlateau]


class LRSchedulerConfigType(TypedDict, total=False):
    """The `"lr_scheduler"` dict `configure_optimizers` may return (only `scheduler` is required)."""

    scheduler: Required[LRSchedulerTypeUnion]
    name: Optional[str]
    interval: str
    frequency: int
    reduce_on_plateau: bool
    monitor: Optional[str]
    strict: bool


class OptimizerConfig(TypedDict):
    """`{"optimizer": ...}` as returned by `configure_optimizers`."""

    optimizer: Optimizer


class OptimizerLRSchedulerConfig(TypedDict):
    """`{"optimizer": ..., "lr_scheduler": ..., "monitor": ...}` as returned by `configure_optimizers`."""

    optimizer: Optimizer
    lr_scheduler: Union[LRSchedulerTypeUnion, LRSchedulerConfigType]
    monitor: NotRequired[str]


# Every shape `configure_optimizers` may return.
OptimizerLRScheduler = Optional[
    Union[
        Optimizer,
        Sequence[Optimizer],
        tuple[Sequence[Optimizer], Sequence[Union[LRSchedulerTypeUnion, LRSchedulerConfig]]],
        OptimizerConfig,
        OptimizerLRSchedulerConfig,
        Sequence[OptimizerConfig],
        Sequence[OptimizerLRSchedulerConfig],
    ]
]
