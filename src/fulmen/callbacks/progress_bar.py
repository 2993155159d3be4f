"""Progress bars: the ProgressBar base and TQDMProgressBar (epoch, batch, it/s and logged metrics).

Redraws are throttled (at most every `refresh_rate` batches and ~10 times a second), and the
metrics shown are read only when a redraw happens, so the bar costs no device sync per step.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.callback import Callback

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer

_MIN_SECONDS_BETWEEN_REDRAWS = 0.1


class ProgressBar(Callback):
    """Base class of progress bars; `get_metrics` gives what the bar shows next to the counts."""

    _is_progress_bar = True

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """The logger version (`v_num`) and every value logged with `prog_bar=True`."""
        metrics: dict[str, Any] = {}
        logger = trainer.logger
        if logger is not None and logger.version is not None:
            version = logger.version
            metrics["v_num"] = version[-4:] if isinstance(version, str) else version
        metrics.update(trainer.progress_bar_metrics)
        return metrics

    def disable(self) -> None:
        """Turn the bar off."""

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print without disturbing the bar."""
        print(*args, **kwargs)

    def enable(self) -> None:
        """Turn the bar on."""


class TQDMProgressBar(ProgressBar):
    """Show tqdm bars for training, validation, testing and prediction."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        self._refresh_rate = refresh_rate
        self._process_position = process_position
        self._leave = leave
        self._enabled = True
        self._bars: dict[str, Any] = {}
        self._last_draw = 0.0

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self._refresh_rate > 0

    def disable(self) -> None:
        self._enabled = False

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print above the active bars without breaking them."""
        from tqdm.auto import tqdm

        active = next((bar for bar in self._bars.values() if not bar.disable), None)
        if active is None:
            print(*args, sep=sep, **kwargs)
        else:
            tqdm.write(sep.join(map(str, args)), file=sys.stdout, **kwargs)

    def enable(self) -> None:
        self._enabled = True

    # -- bar helpers ----------------------------------------------------------------------------

    def _open(self, key: str, description: str, total: float, position: int, leave: bool) -> Any:
        from tqdm.auto import tqdm

        self._close(key)
        bar = tqdm(desc=description, total=None if total == float("inf") else int(total), position=position,
                   leave=leave, dynamic_ncols=True, file=sys.stdout, smoothing=0, disable=not self.is_enabled,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self._bars[key] = bar
        return bar

    def _close(self, key: str) -> None:
        bar = self._bars.pop(key, None)
        if bar is not None:
            bar.close()

    def _advance(self, key: str, count: int, total: float, trainer: Trainer | None = None,
                 pl_module: LightningModule | None = None) -> None:
        bar = self._bars.get(key)
        if bar is None or bar.disable:
            return
        is_last = count >= total
        if count % self._refresh_rate and not is_last:
            return
        now = time.monotonic()
        if now - self._last_draw < _MIN_SECONDS_BETWEEN_REDRAWS and not is_last:
            bar.n = count  # keep the count right; the next redraw shows it
            return
        self._last_draw = now
        bar.n = count
        if trainer is not None and pl_module is not None:
            bar.set_postfix(_format_metrics(self.get_metrics(trainer, pl_module)), refresh=False)
        bar.refresh()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            self.disable()  # one bar per job, drawn by global rank zero

    # -- training -------------------------------------------------------------------------------

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        description = f"Epoch {trainer.current_epoch}"
        total = trainer.num_training_batches
        bar = self._bars.get("train")
        if bar is None or self._leave:
            self._open("train", description, total, self._process_position, leave=True)
        else:
            bar.set_description(description, refresh=False)
            bar.reset(total=None if total == float("inf") else int(total))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._advance("train", batch_idx + 1, trainer.num_training_batches, trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self._bars.get("train")
        if bar is not None and not bar.disable:
            bar.set_postfix(_format_metrics(self.get_metrics(trainer, pl_module)), refresh=False)
            bar.refresh()
        if self._leave:
            self._close("train")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("train")

    # -- evaluation -----------------------------------------------------------------------------

    def _eval_description(self, trainer: Trainer) -> str:
        if trainer.sanity_checking:
            return "Sanity Checking"
        return "Testing" if trainer.testing else "Validation"

    def _eval_batch_start(self, trainer: Trainer, batch_idx: int, dataloader_idx: int) -> None:
        if batch_idx != 0:
            return
        counts = (trainer.num_sanity_val_batches if trainer.sanity_checking else
                  trainer.num_test_batches if trainer.testing else trainer.num_val_batches)
        total = counts[dataloader_idx] if dataloader_idx < len(counts) else float("inf")
        in_fit = trainer.state.fn is not None and trainer.state.fn.value == "fit"
        description = f"{self._eval_description(trainer)} DataLoader {dataloader_idx}"
        self._open("eval", description, total, self._process_position + (1 if in_fit else 0), leave=not in_fit)
        self._eval_total = total

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._eval_batch_start(trainer, batch_idx, dataloader_idx)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance("eval", batch_idx + 1, self._eval_total)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("eval")
        bar = self._bars.get("train")
        if bar is not None and not bar.disable and not trainer.sanity_checking:
            bar.set_postfix(_format_metrics(self.get_metrics(trainer, pl_module)), refresh=True)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._eval_batch_start(trainer, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance("eval", batch_idx + 1, self._eval_total)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("eval")

    # -- prediction -----------------------------------------------------------------------------

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            counts = trainer.num_predict_batches
            self._predict_total = counts[dataloader_idx] if dataloader_idx < len(counts) else float("inf")
            self._open("predict", f"Predicting DataLoader {dataloader_idx}", self._predict_total,
                       self._process_position, leave=True)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance("predict", batch_idx + 1, self._predict_total)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close("predict")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        for key in list(self._bars):
            self._close(key)


def _format_metrics(metrics: dict[str, Any]) -> dict[str, str]:
    return {key: _format_number(value) for key, value in metrics.items()}


def _format_number(value: Any) -> str:
    """Three significant digits, zero-padded to five characters so the bar does not jitter: 1.02 -> "1.020"."""
    if not isinstance(value, float):
        return str(value)
    text = f"{value:.3g}".replace("e+0", "e+").replace("e-0", "e-")
    if "e" in text or "inf" in text or "nan" in text:
        return text
    if "." not in text and len(text) < 5:
        text += "."
    return text.ljust(5, "0")
