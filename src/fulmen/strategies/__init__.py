"""Strategies: how and where the model runs (public: `fulmen.strategies`)."""

from fulmen.strategies.ddp import DDPStrategy
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.strategies.strategy import Strategy

__all__ = ["DDPStrategy", "SingleDeviceStrategy", "Strategy"]
