"""The CPU accelerator."""

from __future__ import annotations

from typing import Any

import torch

from fulmen.accelerators.accelerator import Accelerator
from fulmen.utilities.exceptions import MisconfigurationException


class CPUAccelerator(Accelerator):
    """Processes on the CPU; `devices=N` means N processes."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise MisconfigurationException(f"Device should be CPU, got {device} instead; use CUDAAccelerator or "
                                            "MPSAccelerator for other devices.")

    def teardown(self) -> None:
        pass  # nothing is held on the CPU between runs

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Memory and CPU use, in percent (needs `psutil`, which fulmen does not depend on)."""
        return psutil_stats("CPU", "cpu")

    @staticmethod
    def parse_devices(devices: int | str) -> int:
        """The number of CPU processes `devices` asks for: an int > 0 (or its string)."""
        if isinstance(devices, str) and devices.strip().isdigit():
            devices = int(devices)
        if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
            raise TypeError(f"`devices={devices!r}` selected with `CPUAccelerator` should be an int > 0.")
        return devices

    @staticmethod
    def get_parallel_devices(devices: int | str) -> list[torch.device]:
        return [torch.device("cpu")] * CPUAccelerator.parse_devices(devices)

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def name() -> str:
        return "cpu"


def psutil_stats(kind: str, key_prefix: str) -> dict[str, float]:
    """Virtual memory, CPU and swap use in percent (`<key_prefix>_vm_percent`, ...), read with `psutil` if it is
    installed; `kind` names the device in the error."""
    try:
        import psutil
    except ImportError as error:
        raise ModuleNotFoundError(f"Fetching {kind} device stats requires `psutil`; install it with "
                                  "`pip install psutil`.") from error
    return {f"{key_prefix}_vm_percent": psutil.virtual_memory().percent, f"{key_prefix}_percent": psutil.cpu_percent(),
            f"{key_prefix}_swap_percent": psutil.swap_memory().percent}
