"""Plugins (Lightning's `lightning.pytorch.plugins` path): checkpoint IO, precision and layer synchronisation;
cluster environments are in `fulmen.plugins.environments`."""

from fulmen.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from fulmen.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
from fulmen.plugins.precision import DoublePrecision, FSDPPrecision, HalfPrecision, MixedPrecision, Precision

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "DoublePrecision", "FSDPPrecision", "HalfPrecision", "LayerSync", "MixedPrecision",
           "Precision", "TorchCheckpointIO", "TorchSyncBatchNorm"]
