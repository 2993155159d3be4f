"""SingleDeviceStrategy: one process, one device (cpu, cuda:N or mps)."""

from __future__ import annotations

from typing import Any

import torch

from fulmen.checkpoint_io import CheckpointIO
from fulmen.precision import Precision
from fulmen.strategies.strategy import Strategy, reject_accelerator_object


class SingleDeviceStrategy(Strategy):
    """Train on one device in the current process."""

    strategy_name = "single_device"

    def __init__(self, device: torch.device | str = "cpu", accelerator: Any = None,
                 checkpoint_io: CheckpointIO | None = None, precision_plugin: Precision | None = None) -> None:
        reject_accelerator_object(accelerator, type(self).__name__)
        super().__init__(None, checkpoint_io, precision_plugin)
        self._root_device = torch.device(device)

    def teardown(self) -> None:
        if self.root_device.type == "cuda":
            torch.cuda.empty_cache()
        super().teardown()
