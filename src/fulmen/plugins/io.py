"""Public import path of the checkpoint IO plugins (Lightning's `lightning.pytorch.plugins.io`); they live in
`fulmen/checkpoint_io.py`."""

from fulmen.checkpoint_io import AsyncCheckpointIO as AsyncCheckpointIO  # noqa: F401
from fulmen.checkpoint_io import CheckpointIO as CheckpointIO  # noqa: F401
from fulmen.checkpoint_io import TorchCheckpointIO as TorchCheckpointIO  # noqa: F401

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO"]
