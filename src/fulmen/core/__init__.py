"""The LightningModule, LightningDataModule and their hooks."""

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule

__all__ = ["LightningDataModule", "LightningModule"]
