"""The Accelerator interface: one device kind (CPU, CUDA, MPS)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from fulmen.utilities.exceptions import MisconfigurationException


class Accelerator(ABC):
    """One kind of device. Availability, device counting and `devices=` parsing are static methods, so they can be
    asked without building anything (`CUDAAccelerator.is_available()`)."""

    @abstractmethod
    def setup_device(self, device: torch.device) -> None:
        """Prepare `device` for this process (raises if it is not of this accelerator's kind)."""

    def setup(self, trainer: Any) -> None:
        """Called by the strategy's `setup` once the Trainer's run starts (nothing to prepare here)."""

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        """Register this accelerator under its `name()` in `accelerator_registry` (an object with Lightning's
        `register(name, cls, description=...)`)."""
        accelerator_registry.register(cls.name(), cls, description=cls.__name__)

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


def parse_devices_text(devices: Any, valid: str) -> Any:
    """A `devices` string as the value it stands for: "-1" → -1, "3" → 3, "0,1" → [0, 1]; other values unchanged.

    `valid` lists the accepted forms for the error a malformed string gets.
    """
    if not isinstance(devices, str):
        return devices
    text = devices.strip()
    if text == "-1":
        return -1
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    if text.isdigit():
        return int(text)
    raise MisconfigurationException(f"`devices={devices!r}` is invalid; use {valid}.")
