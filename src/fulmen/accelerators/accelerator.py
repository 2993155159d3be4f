"""The Accelerator interface: one device kind (CPU, CUDA, MPS)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch


class Accelerator(ABC):
    """One kind of device. Availability, device counting and `devices=` parsing are static methods, so they can be
    asked without building anything (`CUDAAccelerator.is_available()`)."""

    @abstractmethod
    def setup_device(self, device: torch.device) -> None:
        """Prepare `device` for this process (raises if it is not of this accelerator's kind)."""

    @abstractmethod
    def teardown(self) -> None:
        """Release what the accelerator holds after a run."""

    @staticmethod
    @abstractmethod
    def parse_devices(devices: Any) -> Any:
        """Turn a `devices=` flag into this accelerator's device description (a count or a list of indices)."""

    @staticmethod
    @abstractmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        """The `torch.device`s that parsed `devices` names."""

    @staticmethod
    @abstractmethod
    def auto_device_count() -> int:
        """How many devices `devices="auto"` uses."""

    @staticmethod
    @abstractmethod
    def is_available() -> bool:
        """Whether this machine has this kind of device."""

    @staticmethod
    @abstractmethod
    def name() -> str:
        """The `Trainer(accelerator=...)` name of this accelerator."""

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Device statistics (memory, utilisation) for `device`."""
        raise NotImplementedError(f"{type(self).__name__} does not report device statistics.")
