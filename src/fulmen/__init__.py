"""fulmen: the PyTorch Lightning 2.x training system, rebuilt small and fast on plain PyTorch.

Public names load lazily (PEP 562) so `import fulmen` costs little more than `import torch`.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "LightningModule": "fulmen.core.module",
    "LightningDataModule": "fulmen.core.datamodule",
    "Trainer": "fulmen.trainer.trainer",
    "Callback": "fulmen.callbacks.callback",
    "seed_everything": "fulmen.utilities.seed",
    "cli_lightning_logo": "fulmen._logo",
}
_SUBPACKAGES = ("accelerators", "callbacks", "loggers", "plugins", "strategies", "utilities", "core", "trainer", "loops",
                "results", "profilers", "tuner")

__all__ = ["Callback", "LightningDataModule", "LightningModule", "Trainer", "seed_everything", "__version__"]

# Info messages (model summary, stopping reasons) are shown like Lightning's unless the user configures logging.
_log = logging.getLogger(__name__)
if not _log.handlers:
    _log.setLevel(logging.INFO)
    _log.addHandler(logging.StreamHandler())
    _log.propagate = False


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fulmen.{name}")
    raise AttributeError(f"module 'fulmen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBPACKAGES])


if TYPE_CHECKING:
    from fulmen.callbacks.callback import Callback
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer
    from fulmen.utilities.seed import seed_everything
    from fulmen._logo import cli_lightning_logo
