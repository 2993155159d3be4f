"""The CUDA accelerator and `find_usable_cuda_devices`."""

from __future__ import annotations

import os
from typing import Any

import torch

from fulmen.accelerators.accelerator import Accelerator, parse_devices_text
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs through CUDA; `devices` names GPU indices."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise MisconfigurationException(f"Device should be GPU, got {device} instead; use CPUAccelerator for "
                                            "the CPU.")
        torch.cuda.set_device(device)

    def setup(self, trainer: Any) -> None:
        """Set the NVIDIA environment flags and free cached memory before the run."""
        self.set_nvidia_flags(trainer.local_rank)
        torch.cuda.empty_cache()

    @staticmethod
    def set_nvidia_flags(local_rank: int) -> None:
        """Number GPUs in PCI bus order (as `nvidia-smi` does) and log which devices this process sees."""
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        visible = os.getenv("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(torch.cuda.device_count())))
        rank_zero_info(f"LOCAL_RANK: {local_rank} - CUDA_VISIBLE_DEVICES: [{visible}]")

    def teardown(self) -> None:
        torch.cuda.empty_cache()  # give cached blocks back so later work in this process can use them

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """`torch.cuda.memory_stats` for `device`."""
        return torch.cuda.memory_stats(device)

    @staticmethod
    def parse_devices(devices: int | str | list[int] | None) -> list[int] | None:
        """GPU indices `devices` asks for: N → the first N, -1 → all, "1,3" or a list → those; 0/None → none."""
        return parse_gpu_indices(devices, torch.cuda.device_count(), "gpu")

    @staticmethod
    def get_parallel_devices(devices: list[int]) -> list[torch.device]:
        return [torch.device("cuda", index) for index in devices]

    @staticmethod
    def auto_device_count() -> int:
        return torch.cuda.device_count()

    @staticmethod
    def is_available() -> bool:
        return torch.cuda.device_count() > 0

    @staticmethod
    def name() -> str:
        return "cuda"


def parse_gpu_indices(devices: Any, available: int, kind: str) -> list[int] | None:
    """Lightning's GPU `devices` rules: an int (or digit string) is a count, "a,b" or a list names indices,
    -1 means every device, and 0, None, "0" or [] mean none (None)."""
    if devices is None or (isinstance(devices, (int, str, list, tuple)) and str(devices).strip() in ("0", "[]", "()")):
        return None
    if isinstance(devices, bool):
        raise TypeError(f"`devices={devices!r}` is not a device count; pass an int, a list of indices or a string.")
    devices = parse_devices_text(devices, "an int, a list of ints or '0,1'")
    if isinstance(devices, int):
        if devices == -1:
            if available == 0:
                raise MisconfigurationException(f"`devices=-1` asks for every {kind}, but none are available.")
            return list(range(available))
        if devices < -1:
            raise MisconfigurationException(f"`devices={devices}` is invalid: use a count >= 0, or -1 for all.")
        devices = list(range(devices))
    indices = [int(index) for index in devices]
    missing = [index for index in indices if not 0 <= index < available]
    if missing:
        raise MisconfigurationException(f"You requested {kind} {indices}, but this machine has {available} "
                                        f"({list(range(available))}); request only existing devices.")
    return indices


def find_usable_cuda_devices(num_devices: int = -1) -> list[int]:
    """Indices of `num_devices` CUDA devices that can take work right now (-1: every usable one), skipping
    devices that are busy or unavailable (e.g. held by another process in exclusive mode)."""
    if num_devices == 0:
        return []
    visible = torch.cuda.device_count()
    if visible == 0:
        raise ValueError(f"You requested to find {num_devices} devices but there are no visible CUDA devices on "
                         "this machine.")
    if num_devices > visible:
        raise ValueError(f"You requested to find {num_devices} devices but this machine only has {visible} GPUs.")
    usable: list[int] = []
    for index in range(visible):
        try:
            torch.tensor(0, device=torch.device("cuda", index))
        except RuntimeError:
            continue
        usable.append(index)
        if len(usable) == num_devices:
            break
    if num_devices != -1 and len(usable) != num_devices:
        raise RuntimeError(f"You requested to find {num_devices} devices but only {len(usable)} are currently "
                           f"available: {usable}. Other processes may be using the rest; ask for fewer.")
    return usable
