"""ModelCheckpoint's file side: names (from the class's naming attributes), free paths, writing, linking and
removing files, and the YAML summary of the best checkpoints."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.callbacks._checkpoint_filename import checkpoint_name

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class CheckpointFiles:
    """Mixed into ModelCheckpoint, whose class attributes (`FILE_EXTENSION`, `CHECKPOINT_JOIN_CHAR`,
    `CHECKPOINT_EQUALS_CHAR`, `CHECKPOINT_NAME_LAST`, `STARTING_VERSION`) shape every name: a subclass that
    overrides one changes the files written."""

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1

    dirpath: str | None
    filename: str | None
    auto_insert_metric_name: bool
    _enable_version_counter: bool

    def format_checkpoint_name(self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None,
                               prefix: str | None = None) -> str:
        """The path a checkpoint with these metrics would get: `dirpath/[prefix-]filename[-vN].ckpt`."""
        name = checkpoint_name(filename or self.filename, metrics, self.auto_insert_metric_name, ver,
                               self.FILE_EXTENSION, self.CHECKPOINT_JOIN_CHAR, self.CHECKPOINT_EQUALS_CHAR, prefix)
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def file_exists(self, filepath: str | os.PathLike, trainer: Trainer) -> bool:
        """Whether `filepath` exists, as rank 0 sees it; every rank gets the same answer."""
        exists = os.path.exists(filepath) if trainer.is_global_zero else False
        return trainer.strategy.reduce_boolean_decision(exists, all=False)

    def to_yaml(self, filepath: str | os.PathLike | None = None) -> None:
        """Write `best_k_models` ({path: score}) as YAML, by default to `dirpath/best_k_models.yaml`."""
        import yaml

        if filepath is None:
            if self.dirpath is None:
                raise ValueError("`to_yaml()` needs a `filepath` while the checkpoint directory is not known yet "
                                 "(pass `dirpath=` or call it after `trainer.fit`).")
            filepath = os.path.join(self.dirpath, "best_k_models.yaml")  # "" : the working directory
        scores = {path: float(score) for path, score in self.best_k_models.items()}
        with open(filepath, "w") as file:
            yaml.dump(scores, file)

    def _free_path(self, trainer: Trainer, candidates: dict[str, Any], replacing: str | None,
                   filename: str | None = None) -> str:
        """The file name for this save, with a `-vN` suffix if taken. Rank 0 looks at the disk and the
        others follow: each rank's own view can differ (a file rank 0 has just written, a slow filesystem)."""
        path = self.format_checkpoint_name(candidates, filename)
        if not self._enable_version_counter:
            return path
        if trainer.is_global_zero:
            version = self.STARTING_VERSION
            while os.path.exists(path) and path != replacing:
                path = self.format_checkpoint_name(candidates, filename, ver=version)
                version += 1
        return trainer.strategy.broadcast(path)

    def _find_last_checkpoints(self) -> list[str]:
        """The `last[-vN]` files in `dirpath`, saved by this run or an earlier one (for `ckpt_path="last"`)."""
        if not self.dirpath or not os.path.isdir(self.dirpath):
            return []
        pattern = re.compile(rf"{re.escape(self.CHECKPOINT_NAME_LAST)}({re.escape(self.CHECKPOINT_JOIN_CHAR)}v\d+)?"
                             rf"{re.escape(self.FILE_EXTENSION)}")
        return [os.path.join(self.dirpath, name) for name in os.listdir(self.dirpath) if pattern.fullmatch(name)]

    def _save(self, trainer: Trainer, path: str) -> None:
        trainer.save_checkpoint(path, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = path
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    def _link(self, trainer: Trainer, target: str, link: str) -> None:
        if trainer.is_global_zero:
            if os.path.isdir(link) and not os.path.islink(link):
                shutil.rmtree(link)  # a sharded checkpoint's folder
            elif os.path.lexists(link):
                os.remove(link)
            try:
                os.symlink(os.path.relpath(target, os.path.dirname(link)), link)
            except OSError:  # no symlinks here (e.g. Windows without the privilege): a copy, as in Lightning
                if os.path.isdir(target):
                    shutil.copytree(target, link)
                else:
                    shutil.copy2(target, link)
        trainer.strategy.barrier()

    def _may_remove(self, trainer: Trainer, previous: str, current: str) -> bool:
        if previous == current:
            return False
        previous_path = Path(previous).absolute()
        if trainer.ckpt_path is not None and previous_path == Path(trainer.ckpt_path).absolute():
            return False  # never delete the checkpoint this run resumed from
        return Path(self.dirpath or ".").absolute() in previous_path.parents

    def _remove(self, trainer: Trainer, path: str) -> None:
        # Through the strategy, as Lightning does: FSDP's sharded checkpoints are directories.
        if trainer.is_global_zero:
            trainer.strategy.remove_checkpoint(path)
