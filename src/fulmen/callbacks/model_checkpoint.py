"""ModelCheckpoint: save checkpoints periodically and keep the best `save_top_k` by a monitored metric.

Owns: when to save (epochs, train steps, time), which files to keep, and their names. The checkpoint
contents come from `trainer.save_checkpoint`; the bytes are written atomically by CheckpointIO.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from copy import copy
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from fulmen.callbacks._checkpoint_files import CheckpointFiles
from fulmen.callbacks.checkpoint import Checkpoint
from fulmen.checkpoint_io import local_path
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class ModelCheckpoint(CheckpointFiles, Checkpoint):
    """Save the model during fit: every epoch by default, or every N steps/epochs or time interval.

    With `monitor`, keep the `save_top_k` best files by that logged metric (`mode="min"` or `"max"`);
    `save_top_k=-1` keeps all, `0` none. `save_last=True` also keeps `last.ckpt` (`"link"`: a symlink).
    File names follow the class attributes `CHECKPOINT_JOIN_CHAR` ("-"), `CHECKPOINT_EQUALS_CHAR` ("="),
    `CHECKPOINT_NAME_LAST` ("last"), `FILE_EXTENSION` (".ckpt") and `STARTING_VERSION` (1); override them on
    a subclass (or the instance) to change the names.
    """

    _is_checkpoint = True
    _monitors_metrics = True

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 monitor: str | None = None, verbose: bool = False, save_last: bool | str | None = None,
                 save_top_k: int = 1, save_on_exception: bool = False, save_weights_only: bool = False,
                 mode: str = "min", auto_insert_metric_name: bool = True, every_n_train_steps: int | None = None,
                 train_time_interval: timedelta | None = None, every_n_epochs: int | None = None,
                 save_on_train_epoch_end: bool | None = None, enable_version_counter: bool = True) -> None:
        # Lightning's checks, in its order and words, then the fix.
        if save_top_k < -1:
            raise MisconfigurationException(f"Invalid value for save_top_k={save_top_k}. Must be >= -1 (keep all), "
                                            "0 (keep none) or a positive number.")
        for name, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and value < 0:
                raise MisconfigurationException(f"Invalid value for {name}={value}. Must be >= 0.")
        triggers = [every_n_train_steps, every_n_epochs, train_time_interval]
        if sum(bool(trigger) for trigger in triggers) > 1:
            raise MisconfigurationException(
                f"Combination of parameters every_n_train_steps={every_n_train_steps or 0}, every_n_epochs="
                f"{every_n_epochs or 0} and train_time_interval={train_time_interval} should be mutually exclusive: "
                "set only one of them.")
        if monitor is None and save_top_k not in (-1, 0, 1):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None) is not a valid configuration. No quantity "
                "for top_k to track: set `monitor` to a logged metric, or use save_top_k in (-1, 0, 1)."
            )
        if mode not in ("min", "max"):
            raise MisconfigurationException(f"`mode` can be min, max but got {mode}: pass `ModelCheckpoint(mode=...)` "
                                            "'min' or 'max'.")
        if save_last not in (None, True, False, "link"):
            raise MisconfigurationException(f"`save_last={save_last!r}` is invalid; use True, False or 'link'.")
        if dirpath:  # "" stays "": file names relative to the working directory, as in Lightning
            dirpath = os.path.realpath(os.path.expanduser(local_path(dirpath, "write checkpoints to")))
        self.dirpath = None if dirpath is None else os.fspath(dirpath)
        self.filename = filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self._every_n_train_steps = every_n_train_steps or 0
        self._train_time_interval = train_time_interval
        no_trigger = not every_n_train_steps and train_time_interval is None and every_n_epochs is None
        self._every_n_epochs = 1 if no_trigger else (every_n_epochs or 0)
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter
        self.best_k_models: dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.kth_value: torch.Tensor | None = None
        self.best_model_score: torch.Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self.current_score: torch.Tensor | None = None
        self._last_global_step_saved = 0
        self._last_checkpoint_saved = ""
        self._last_time_checked: float | None = None
        self._save_after_validation = False  # a step/time save waiting for the monitored value

    @property
    def every_n_epochs(self) -> int:
        """Save every this many epochs (0: saves follow steps or time instead)."""
        return self._every_n_epochs

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor, mode=self.mode, every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs, train_time_interval=self._train_time_interval,
        )

    # -- when to save ---------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        dirpath = self.dirpath if self.dirpath is not None else _default_dirpath(trainer)
        self.dirpath = trainer.strategy.broadcast(dirpath)
        if (trainer.is_global_zero and stage == "fit" and self.save_top_k != 0 and os.path.isdir(self.dirpath)
                and os.listdir(self.dirpath)):
            rank_zero_warn(f"Checkpoint directory {self.dirpath} exists and is not empty.")  # Lightning's warning

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()
        self._save_after_validation = False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return  # the common per-epoch configuration: nothing to decide per batch
        if self._skip_saving(trainer):
            return
        skip_batch = self._every_n_train_steps < 1 or trainer.global_step % self._every_n_train_steps != 0
        skip_time = True
        now = time.monotonic()
        if self._train_time_interval is not None and self._last_time_checked is not None:
            skip_time = now - self._last_time_checked < self._train_time_interval.total_seconds()
            skip_time = trainer.strategy.broadcast(skip_time)  # all ranks must agree, or they would hang
        if skip_batch and skip_time:
            return
        if not skip_time:
            self._last_time_checked = now
        if self.monitor is not None and self._validation_brings_monitor(trainer, batch_idx):
            self._save_after_validation = True
            return
        self._save_topk_and_last(trainer)

    def _validation_brings_monitor(self, trainer: Trainer, batch_idx: int) -> bool:
        """Whether a step/time save should wait for validation: the monitored value is not logged yet,
        or the epoch's last batch is followed by a validation that will log a fresh one."""
        fit_loop = trainer.fit_loop
        if fit_loop is None or not fit_loop.val_loop.enabled:
            return False
        if self.monitor not in trainer.callback_metrics:
            return True
        return trainer.is_last_batch and fit_loop.validation_due(batch_idx, True)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._skip_saving(trainer) and self._save_on_train_epoch_end_now(trainer):
            self._save_at_epoch(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._skip_saving(trainer):
            return
        if self._save_after_validation:
            self._save_after_validation = False
            self._save_topk_and_last(trainer)
        elif not self._save_on_train_epoch_end_now(trainer):
            self._save_at_epoch(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and not self._last_checkpoint_saved:  # save_last promises a last.ckpt
            self._save_last(trainer, self._monitor_candidates(trainer))

    def _save_at_epoch(self, trainer: Trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self._epoch_due(trainer):
            self._save_topk(trainer, candidates)
        # last.ckpt follows the files actually written at this step (a link always follows the latest).
        if self._last_global_step_saved == trainer.global_step or (
                self.save_last == "link" and self._last_checkpoint_saved):
            self._save_last(trainer, candidates)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if (not self.save_on_exception or trainer.state.fn != TrainerFn.FITTING or self.dirpath is None
                or trainer.fast_dev_run or trainer.sanity_checking
                or self._last_global_step_saved == trainer.global_step):
            return
        # Named like every other save, not ranked among the top k, and (Lightning 2.6) without a version
        # suffix: a file of that name is overwritten.
        candidates = self._monitor_candidates(trainer)
        path = self.format_checkpoint_name(candidates)
        self._save(trainer, path)
        self._save_last(trainer, candidates)
        rank_zero_info(f"{type(exception).__name__} raised during fit: saved a checkpoint to {path}")

    def _epoch_due(self, trainer: Trainer) -> bool:
        return self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0

    def _skip_saving(self, trainer: Trainer) -> bool:
        return (bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
                or self._last_global_step_saved == trainer.global_step)

    def _save_on_train_epoch_end_now(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.check_val_every_n_epoch != 1:
            return False  # validation does not run every epoch: save after it runs instead
        if sum(trainer.num_val_batches) == 0 or not trainer.fit_loop.val_loop.enabled:
            return True  # no validation: save when the training epoch ends
        return trainer.val_check_interval == 1.0

    # -- what to keep -----------------------------------------------------------------------------

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Any]:
        candidates = copy(trainer.callback_metrics)
        epoch = candidates.get("epoch")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        step = candidates.get("step")
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _save_topk_and_last(self, trainer: Trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        self._save_topk(trainer, candidates)
        self._save_last(trainer, candidates)

    def _save_topk(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            path = self._free_path(trainer, candidates, self.best_model_path)
            previous = self.best_model_path
            with self._rollback_on_failure():
                self.best_model_path = path
                self._save(trainer, path)
            if self.save_top_k == 1 and previous and self._may_remove(trainer, previous, path):
                self._remove(trainer, previous)
            return
        if self.monitor not in candidates:
            message = (f"`ModelCheckpoint(monitor={self.monitor!r})` could not find the monitored key in the returned "
                       f"metrics: {list(candidates)}. HINT: Did you call `log({self.monitor!r}, value)` in the "
                       "`LightningModule`?")
            if trainer.fit_loop is not None and trainer.fit_loop.val_loop.enabled and trainer.num_val_batches:
                raise MisconfigurationException(message)
            rank_zero_warn(message)
            return
        current = candidates[self.monitor]
        if self.check_monitor_top_k(trainer, current):
            self._update_best_and_save(trainer, current, candidates)
        elif self.verbose:
            rank_zero_info(f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: {self.monitor!r} "
                           f"was not in top {self.save_top_k}")

    def check_monitor_top_k(self, trainer: Trainer, current: Any = None) -> bool:
        """Whether a checkpoint scoring `current` belongs among the best `save_top_k` (all ranks agree)."""
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        better = torch.lt if self.mode == "min" else torch.gt
        decision = bool(better(torch.as_tensor(current), self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)

    def _update_best_and_save(self, trainer: Trainer, current: Any, candidates: dict[str, Any]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        removed = self.kth_best_model_path if len(self.best_k_models) == k and k > 0 else None
        current = torch.as_tensor(current).detach()
        if torch.isnan(current):  # a NaN never counts as an improvement
            current = torch.tensor(float("inf") if self.mode == "min" else float("-inf"), device=current.device)
        path = self._free_path(trainer, candidates, removed)
        # The new bookkeeping goes into the file itself (it resumes as the best), and is undone if the write fails.
        with self._rollback_on_failure():
            if removed is not None:
                self.best_k_models.pop(removed)
            self.current_score = current
            self.best_k_models[path] = current
            if len(self.best_k_models) == k:
                worst = max if self.mode == "min" else min
                self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.get)
                self.kth_value = self.best_k_models[self.kth_best_model_path]
            best = min if self.mode == "min" else max
            self.best_model_path = best(self.best_k_models, key=self.best_k_models.get)
            self.best_model_score = self.best_k_models[self.best_model_path]
            self._save(trainer, path)
        if self.verbose:
            rank_zero_info(f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: {self.monitor!r} "
                           f"reached {current.item():.5f} (best {self.best_model_score.item():.5f}), saved model "
                           f"to {path!r} as top {k}")
        if removed and self._may_remove(trainer, removed, path):
            self._remove(trainer, removed)

    def _save_last(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        path = self._free_path(trainer, candidates, self.last_model_path, self.CHECKPOINT_NAME_LAST)
        previous = self.last_model_path
        with self._rollback_on_failure():
            self.last_model_path = path
            if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
                self._link(trainer, self._last_checkpoint_saved, path)
            else:
                self._save(trainer, path)
        if previous and self._may_remove(trainer, previous, path):
            self._remove(trainer, previous)

    @contextlib.contextmanager
    def _rollback_on_failure(self) -> Iterator[None]:
        """Undo the best/last bookkeeping if the write fails, so no path names a file that was not written."""
        saved = (dict(self.best_k_models), self.kth_best_model_path, self.kth_value, self.best_model_score,
                 self.best_model_path, self.current_score, self.last_model_path)
        try:
            yield
        except BaseException:
            (self.best_k_models, self.kth_best_model_path, self.kth_value, self.best_model_score,
             self.best_model_path, self.current_score, self.last_model_path) = saved
            raise

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "best_model_score": self.best_model_score,
                "best_model_path": self.best_model_path, "current_score": self.current_score,
                "dirpath": self.dirpath, "best_k_models": dict(self.best_k_models),
                "kth_best_model_path": self.kth_best_model_path, "kth_value": self.kth_value,
                "last_model_path": self.last_model_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath") == self.dirpath:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict["kth_best_model_path"]
            self.kth_value = state_dict["kth_value"]
            self.best_k_models = dict(state_dict["best_k_models"])
            self.last_model_path = state_dict["last_model_path"]
        else:
            rank_zero_warn(f"The dirpath has changed from {state_dict.get('dirpath')!r} to {self.dirpath!r}, therefore "
                           "`best_model_score`, `kth_best_model_path`, `kth_value`, `last_model_path` and "
                           "`best_k_models` won't be reloaded. Only `best_model_path` will be reloaded.")
        self.best_model_path = state_dict["best_model_path"]


def _default_dirpath(trainer: Trainer) -> str:
    """`<log_dir>/checkpoints` with a logger (Lightning's layout), else `<default_root_dir>/checkpoints`."""
    loggers = trainer.loggers
    if not loggers:
        return os.path.join(trainer.default_root_dir, "checkpoints")
    if len(loggers) == 1:
        logger = loggers[0]
        save_dir = logger.save_dir or trainer.default_root_dir
        name, version = logger.name, logger.version
    else:
        save_dir = loggers[0].save_dir or trainer.default_root_dir
        name = "_".join(dict.fromkeys(str(logger.name) for logger in loggers))
        version = "_".join(dict.fromkeys(str(logger.version) for logger in loggers))
    version = version if isinstance(version, str) else f"version_{version}"
    return os.path.join(save_dir, str(name or ""), version, "checkpoints")
