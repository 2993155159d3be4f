"""`OnExceptionCheckpoint`: save a checkpoint when a run fails, and resume the next `fit` from it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union

from fulmen.callbacks.checkpoint import Checkpoint

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class OnExceptionCheckpoint(Checkpoint):
    """Write `dirpath/filename.ckpt` when fit, validate, test or predict raises.

    While it is among the callbacks, `fit()` without `ckpt_path` resumes from the newest of these files and the
    `last` checkpoints (as `ckpt_path="last"`). A run that ends normally deletes the file.

    Args:
        dirpath: the directory to write to (known up front, since the exception can come at any moment).
        filename: the file's name without the `.ckpt` extension.
    """

    FILE_EXTENSION = ".ckpt"
    _is_exception_checkpoint = True  # fit without ckpt_path resumes from `ckpt_path` (trainer/checkpointing.py)

    def __init__(self, dirpath: Union[str, os.PathLike], filename: str = "on_exception") -> None:
        super().__init__()
        if not filename:
            raise ValueError("`OnExceptionCheckpoint(filename=...)` cannot be empty; give the file's name without "
                             "the extension, e.g. 'on_exception'.")
        self.dirpath = dirpath
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint is written."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        trainer.save_checkpoint(self.ckpt_path)  # replaces the file of an earlier failure

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Reached only when the run ended without an exception: the file would resume a finished run.
        if trainer.is_global_zero:
            trainer.strategy.checkpoint_io.remove_checkpoint(self.ckpt_path)
