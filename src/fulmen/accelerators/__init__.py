"""Accelerators (public: `fulmen.accelerators`, Lightning's `lightning.pytorch.accelerators`): what a device kind
is, whether it is available, and how a `devices=` flag maps to devices of that kind."""

from fulmen.accelerators.accelerator import Accelerator
from fulmen.accelerators.cpu import CPUAccelerator
from fulmen.accelerators.cuda import CUDAAccelerator, find_usable_cuda_devices
from fulmen.accelerators.mps import MPSAccelerator

__all__ = ["Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "find_usable_cuda_devices"]


def accelerator_for(device_type: str) -> Accelerator:
    """The accelerator object for a resolved device type ("cpu", "cuda" or "mps")."""
    return {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}[device_type]()
