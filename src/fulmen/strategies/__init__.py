"""Strategies: how and where the model runs (public: `fulmen.strategies`).

`DDPStrategy` and `FSDPStrategy` load on first use: their modules bring in `torch.distributed` collectives and DDP.
"""

from typing import TYPE_CHECKING

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["DDPStrategy", "FSDPStrategy", "ModelParallelStrategy", "ParallelStrategy", "SingleDeviceStrategy",
           "Strategy"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "DDPStrategy": "fulmen.strategies.ddp",
    "FSDPStrategy": "fulmen.strategies.fsdp",
    "ModelParallelStrategy": "fulmen.strategies.model_parallel",
    "ParallelStrategy": "fulmen.strategies.parallel",
    "SingleDeviceStrategy": "fulmen.strategies.single_device",
    "Strategy": "fulmen.strategies.strategy",
})

if TYPE_CHECKING:
    from fulmen.strategies.ddp import DDPStrategy
    from fulmen.strategies.fsdp import FSDPStrategy
    from fulmen.strategies.model_parallel import ModelParallelStrategy
    from fulmen.strategies.parallel import ParallelStrategy
    from fulmen.strategies.single_device import SingleDeviceStrategy
    from fulmen.strategies.strategy import Strategy
