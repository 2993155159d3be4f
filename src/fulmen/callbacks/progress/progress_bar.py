"""The ProgressBar base class: the trainer reference, the bar descriptions, batch totals per stage and dataloader,
and the metrics a bar shows (`get_metrics`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class ProgressBar(Callback):
    """Base class of progress bars. Subclasses implement `disable`/`enable` and draw in the batch hooks, using
    `total_*_batches`, the `*_description` properties and `get_metrics`; call `super().setup(...)` and
    `super().__init__()` when overriding them."""

    _is_progress_bar = True
    # Class-level defaults too, so a subclass whose `__init__` skips `super().__init__()` still works.
    _trainer: Trainer | None = None
    _current_eval_dataloader_idx: int | None = None

    def __init__(self) -> None:
        self._trainer = None
        self._current_eval_dataloader_idx = None

    @property
    def trainer(self) -> Trainer:
        """The Trainer this bar is attached to (set in `setup`)."""
        trainer = self._trainer
        if trainer is None:
            raise TypeError(f"The `{type(self).__name__}._trainer` reference has not been set yet.")
        return trainer

    @property
    def sanity_check_description(self) -> str:
        return "Sanity Checking"

    @property
    def train_description(self) -> str:
        return "Training"

    @property
    def validation_description(self) -> str:
        return "Validation"

    @property
    def test_description(self) -> str:
        return "Testing"

    @property
    def predict_description(self) -> str:
        return "Predicting"

    @property
    def total_train_batches(self) -> int | float:
        """Training batches this epoch (`inf` for an iterable without length); with `max_epochs=-1` and
        `max_steps`, no more than the steps left."""
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            return min(trainer.num_training_batches, trainer.max_steps - trainer.global_step)
        return trainer.num_training_batches

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        """Batches of the validation (or sanity-check) dataloader being run."""
        trainer = self.trainer
        return self._current_total(trainer.num_sanity_val_batches if trainer.sanity_checking
                                   else trainer.num_val_batches)

    @property
    def total_test_batches_current_dataloader(self) -> int | float:
        """Batches of the test dataloader being run."""
        return self._current_total(self.trainer.num_test_batches)

    @property
    def total_predict_batches_current_dataloader(self) -> int | float:
        """Batches of the predict dataloader being run."""
        return self._current_total(self.trainer.num_predict_batches)

    @property
    def total_val_batches(self) -> int | float:
        """Validation batches over all validation dataloaders in this epoch (0 in an epoch that does not validate)."""
        trainer = self.trainer
        every = trainer.check_val_every_n_epoch
        if every is not None and (trainer.current_epoch + 1) % every != 0:
            return 0
        batches = trainer.num_val_batches
        return sum(batches) if isinstance(batches, list) else batches

    def _current_total(self, batches: Any) -> int | float:
        if not isinstance(batches, list):
            return batches
        if self._current_eval_dataloader_idx is None:
            raise RuntimeError("The current dataloader is not known yet: call `has_dataloader_changed(dataloader_idx)` "
                               "in the batch-start hook before reading the per-dataloader total.")
        return batches[self._current_eval_dataloader_idx]

    def has_dataloader_changed(self, dataloader_idx: int) -> bool:
        """Record `dataloader_idx` as the current one; True when it differs from the previous (a new bar is due)."""
        previous = self._current_eval_dataloader_idx
        self._current_eval_dataloader_idx = dataloader_idx
        return previous != dataloader_idx

    def reset_dataloader_idx_tracker(self) -> None:
        """Forget the current dataloader (at the end of an evaluation or prediction run)."""
        self._current_eval_dataloader_idx = None

    def disable(self) -> None:
        """Turn the bar off (the Trainer does this on ranks other than 0). Subclasses implement it."""
        raise NotImplementedError(f"`{type(self).__name__}` must implement `disable()` (and `enable()`): a "
                                  "ProgressBar subclass decides how it stops drawing.")

    def enable(self) -> None:
        """Turn the bar back on. Subclasses implement it."""
        raise NotImplementedError(f"`{type(self).__name__}` must implement `enable()` (and `disable()`): a "
                                  "ProgressBar subclass decides how it resumes drawing.")

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print without breaking the bar (the base prints plainly)."""
        print(*args, **kwargs)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer
        if not trainer.is_global_zero:
            self.disable()  # one bar per job, drawn by global rank zero

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """What the bar shows next to the counts: the logger version (`v_num`, the last 4 characters of a string
        version) and every value logged with `prog_bar=True`. Override it to change the items."""
        standard = _standard_metrics(trainer)
        logged = trainer.progress_bar_metrics
        duplicates = [name for name in standard if name in logged]
        if duplicates:
            rank_zero_warn(f"The progress bar already tracks a metric with the name(s) '{', '.join(duplicates)}' and "
                           f"`self.log('{duplicates[0]}', ..., prog_bar=True)` will overwrite this value. If this is "
                           "undesired, change the name or override `get_metrics()` in the progress bar callback.")
        return {**standard, **logged}


class SwitchableProgressBar(ProgressBar):
    """The TQDM and rich bars' shared on/off switch: off after `disable()`, or when `refresh_rate` is 0."""

    def __init__(self, refresh_rate: int) -> None:
        super().__init__()
        self._refresh_rate = refresh_rate
        self._enabled = True

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.refresh_rate > 0

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True


def _standard_metrics(trainer: Trainer) -> dict[str, Any]:
    loggers = trainer.loggers
    if not loggers:
        return {}
    if len(loggers) == 1:
        version = loggers[0].version
    else:  # several loggers: their distinct versions joined, as Lightning does
        version = "_".join(dict.fromkeys(str(logger.version) for logger in loggers))
    if version in ("", None):
        return {}
    return {"v_num": version[-4:] if isinstance(version, str) else version}
