"""Plugins (Lightning's `lightning.pytorch.plugins` path): layer synchronisation."""

from fulmen.plugins.layer_sync import LayerSync, TorchSyncBatchNorm

__all__ = ["LayerSync", "TorchSyncBatchNorm"]
