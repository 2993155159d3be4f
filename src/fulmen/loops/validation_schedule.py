"""ValidationSchedule: when validation runs inside `fit`, and when its data is requested.

Owns: the batch (or clock) schedule from `val_check_interval` / `check_val_every_n_epoch`, requesting the
validation data lazily as Lightning does (at train start only if the first epoch validates), the counts the progress
bar reads, and when training data is reloaded. `FitLoop` inherits it: the loop reads top to bottom, this says when.
"""

from __future__ import annotations

import time
from datetime import timedelta

from fulmen.trainer.state import RunningStage
from fulmen.utilities.exceptions import MisconfigurationException


class ValidationSchedule:
    """The validation-scheduling half of `FitLoop` (uses its `config`, `state`, `val_loop`, `run_state`,
    `total_batch_idx` and the time of the last validation)."""

    def _val_data_ready(self) -> bool:
        """Whether there is validation data to run; requested the first time, and again when
        `reload_dataloaders_every_n_epochs` says so (as the validating stage, as Lightning), with its counts
        published."""
        reload = self._val_reload_due()
        if self.val_loop.enabled and (not self.run_state.num_val_batches or reload):
            self.state.stage = RunningStage.VALIDATING
            self._setup_val_data(reload)
            self.state.stage = RunningStage.TRAINING
        return self.val_loop.enabled

    def _val_reload_due(self) -> bool:
        every, last = self.config.reload_dataloaders_every_n_epochs, self.val_loop.last_reload_epoch
        return bool(every and self.val_loop.loaders and (last is None or self.state.current_epoch - last >= every))

    def _validates(self, epoch: int) -> bool:
        every = self.config.check_val_every_n_epoch
        return every is None or (epoch + 1) % every == 0

    def _setup_val_data(self, reload: bool = False) -> None:
        """Request the validation data (if not yet, or again to reload) and publish Lightning's counts of it,
        whether or not a validation ever runs: full batch counts, and the sanity share of them (0 when skipped)."""
        val_loop = self.val_loop
        if not val_loop.enabled:
            return
        if not val_loop.loaders or reload:
            val_loop.setup_data()
            val_loop.last_reload_epoch = self.state.current_epoch
        steps = self.config.num_sanity_val_steps
        self.run_state.num_sanity_val_batches = [min(steps, count) for count in val_loop.num_batches]
        self.run_state.num_val_batches = list(val_loop.num_batches)
        if not any(val_loop.num_batches):
            val_loop.enabled, val_loop.no_batches = False, True

    def _set_val_check_batch(self, num_batches: int | float) -> None:
        config = self.config
        interval = config.val_check_interval
        if isinstance(interval, timedelta):
            # Time-based: no batch schedule; the clock (re)starts whenever training data is set up (Lightning).
            self.val_check_batch: int | float | None = None
            self._val_check_seconds = interval.total_seconds()
            self._last_val_time = time.monotonic()
        elif isinstance(interval, int):
            # As Lightning: not an error when validation is off anyway (`limit_val_batches=0`).
            if interval > num_batches and config.check_val_every_n_epoch is not None and config.limit_val_batches > 0:
                raise ValueError(  # Lightning's words, then the fix
                    f"`val_check_interval` ({interval}) must be less than or equal to the number of the training "
                    f"batches ({num_batches}): validation would never run. Use an interval <= the number of "
                    "batches or a float fraction; set `check_val_every_n_epoch=None` to count batches across "
                    "epochs, or `limit_val_batches=0` to turn validation off."
                )
            self.val_check_batch = interval
        elif num_batches == float("inf"):
            if interval != 1.0:
                raise MisconfigurationException(
                    f"`val_check_interval={interval}` is a fraction of the epoch, but the training dataloader has "
                    "no length; pass an int number of batches instead."
                )
            self.val_check_batch = float("inf")
        else:
            self.val_check_batch = max(1, int(num_batches * interval))

    def validation_due(self, batch_idx: int, is_last: bool) -> bool:
        """Whether validation is due after training batch `batch_idx` (`is_last`: the epoch's last batch); with
        data of no batch it is still due (Lightning calls `on_validation_model_zero_grad`, then runs nothing)."""
        if not self.val_loop.enabled and not self.val_loop.no_batches:
            return False
        every = self.config.check_val_every_n_epoch
        if not self._validates(self.state.current_epoch):
            return False
        if self.state.should_stop and self._can_stop_early():
            return True  # Lightning validates once more when stopping early (e.g. EarlyStopping), if allowed
        if self.val_check_batch is None:
            return time.monotonic() - self._last_val_time >= self._val_check_seconds
        if self.val_check_batch == float("inf"):
            return is_last
        # `check_val_every_n_epoch=None`: `val_check_interval` counts batches across epochs.
        current = self.total_batch_idx if every is None else batch_idx
        return (current + 1) % self.val_check_batch == 0

    def _reload_due(self, epoch: int) -> bool:
        every = self.config.reload_dataloaders_every_n_epochs
        return bool(every) and epoch > 0 and epoch % every == 0
