"""The MPS (Apple silicon) accelerator."""

from __future__ import annotations

from typing import Any

import torch

from fulmen.accelerators.accelerator import Accelerator
from fulmen.accelerators.cpu import psutil_stats
from fulmen.accelerators.cuda import parse_gpu_indices
from fulmen.utilities.exceptions import MisconfigurationException


class MPSAccelerator(Accelerator):
    """Apple's Metal Performance Shaders GPU: one device."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != "mps":
            raise MisconfigurationException(f"Device should be MPS, got {device} instead; use CPUAccelerator for "
                                            "the CPU.")

    def teardown(self) -> None:
        pass  # MPS keeps no per-run state

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Memory and CPU use of the machine, in percent (MPS shares system memory; needs `psutil`), under
        Lightning's keys `M1_vm_percent`, `M1_percent` and `M1_swap_percent`."""
        return psutil_stats("MPS", "M1")

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        return parse_gpu_indices(devices, MPSAccelerator.auto_device_count() if MPSAccelerator.is_available() else 0,
                                 "mps")

    @staticmethod
    def get_parallel_devices(devices: int | str | list[int]) -> list[torch.device]:
        return [torch.device("mps", index) for index in MPSAccelerator.parse_devices(devices) or []]

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())

    @staticmethod
    def name() -> str:
        return "mps"
