"""CheckpointIO: the one place checkpoint bytes hit the disk.

Owns: atomic writes (temporary file in the same directory, then `os.replace`) so a failed or
interrupted save never destroys the previous file, and loading with `torch.load(weights_only=True)`
unless told otherwise. Subclass it to store checkpoints elsewhere.

No fsync per save: it would cost about a millisecond each time, and the rename already guarantees
readers see the old file or the new one. Subclass and override `save_checkpoint` for power-loss durability.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointIO:
    """Save and load checkpoint dicts on the local filesystem."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        """Write `checkpoint` to `path` atomically: readers see the old file or the new one, never half of one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
            os.replace(temporary, path)
        except BaseException:
            with _ignore_missing():
                os.unlink(temporary)
            raise

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Read a checkpoint; only tensors and plain containers unless `weights_only=False` (trusted files only)."""
        from fulmen.core.saving import load_checkpoint_file

        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        with _ignore_missing():
            os.remove(path)


class _ignore_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        return kind is not None and issubclass(kind, FileNotFoundError)
