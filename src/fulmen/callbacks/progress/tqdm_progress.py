"""TQDMProgressBar: tqdm bars for sanity checking, training, validation, testing and prediction.

Each bar comes from an `init_*_tqdm` method and the shown items from `get_metrics`, so a subclass customises the
bar by overriding them. Redraws are throttled (at most every `refresh_rate` batches and ~10 times a second) and
the metrics are read only when a redraw happens, so the bar costs no device sync per step. tqdm itself is
imported on first use, keeping `import fulmen` cheap.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.progress.progress_bar import SwitchableProgressBar

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer

_MIN_SECONDS_BETWEEN_REDRAWS = 0.1
_PAD_SIZE = 5
_tqdm_class: Any = None


def __getattr__(name: str) -> Any:
    if name == "Tqdm":  # built on first access: defining it needs tqdm imported
        return _tqdm()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tqdm() -> Any:
    """The `Tqdm` class: tqdm whose numbers in the postfix are padded to five characters so the bar does not jitter
    ("0.5" shows as "0.500", 7.0 as "7.000")."""
    global _tqdm_class
    if _tqdm_class is None:
        from tqdm.auto import tqdm

        class Tqdm(tqdm):
            @staticmethod
            def format_num(n: int | float | str) -> str:
                padded = isinstance(n, (float, str))
                text = n if isinstance(n, str) else tqdm.format_num(n)
                if padded and "e" not in text:
                    if "." not in text and len(text) < _PAD_SIZE:
                        try:
                            float(text)
                        except ValueError:
                            return text
                        text += "."
                    text += "0" * (_PAD_SIZE - len(text))
                return text

        Tqdm.__module__, Tqdm.__qualname__ = __name__, "Tqdm"
        _tqdm_class = Tqdm
    return _tqdm_class


class TQDMProgressBar(SwitchableProgressBar):
    """Show tqdm bars for training, validation, testing and prediction on stdout.

    Args:
        refresh_rate: redraw every this many batches; 0 disables the bars.
        process_position: offset the bars by this many lines (2 per position), to sit below other bars.
        leave: keep each finished epoch's training bar on screen, starting a new bar per epoch.
    """

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(_resolve_refresh_rate(refresh_rate))
        self._process_position = process_position
        self._leave = leave
        self._train_progress_bar: Any = None
        self._val_progress_bar: Any = None
        self._test_progress_bar: Any = None
        self._predict_progress_bar: Any = None
        self._last_draw = 0.0

    def __getstate__(self) -> dict:
        # Bars hold file handles and locks: a pickled (or deep-copied) callback leaves them behind.
        tqdm_type = _tqdm_class.__mro__[1] if _tqdm_class is not None else None
        return {key: None if tqdm_type is not None and isinstance(value, tqdm_type) else value
                for key, value in vars(self).items()}

    # -- the bars (Lightning raises TypeError when one is read before it was created) ------------

    def _bar(self, name: str) -> Any:
        bar = getattr(self, f"_{name}")
        if bar is None:
            raise TypeError(f"The `{type(self).__name__}._{name}` reference has not been set yet.")
        return bar

    @property
    def train_progress_bar(self) -> Any:
        return self._bar("train_progress_bar")

    @train_progress_bar.setter
    def train_progress_bar(self, bar: Any) -> None:
        self._train_progress_bar = bar

    @property
    def val_progress_bar(self) -> Any:
        return self._bar("val_progress_bar")

    @val_progress_bar.setter
    def val_progress_bar(self, bar: Any) -> None:
        self._val_progress_bar = bar

    @property
    def test_progress_bar(self) -> Any:
        return self._bar("test_progress_bar")

    @test_progress_bar.setter
    def test_progress_bar(self, bar: Any) -> None:
        self._test_progress_bar = bar

    @property
    def predict_progress_bar(self) -> Any:
        return self._bar("predict_progress_bar")

    @predict_progress_bar.setter
    def predict_progress_bar(self, bar: Any) -> None:
        self._predict_progress_bar = bar

    @property
    def process_position(self) -> int:
        return self._process_position

    # -- bar factories: override these to customise a bar -----------------------------------------

    def _new_bar(self, description: str, offset: int, leave: bool, smoothing: bool) -> Any:
        options = dict(smoothing=0) if smoothing else {}
        return _tqdm()(desc=description, position=2 * self.process_position + offset, disable=self.is_disabled,
                       leave=leave, dynamic_ncols=True, file=sys.stdout, bar_format=self.BAR_FORMAT, **options)

    def init_sanity_tqdm(self) -> Any:
        """The bar of the validation sanity check."""
        return self._new_bar(self.sanity_check_description, 0, leave=False, smoothing=False)

    def init_train_tqdm(self) -> Any:
        """The training bar."""
        return self._new_bar(self.train_description, 0, leave=True, smoothing=True)

    def init_predict_tqdm(self) -> Any:
        """The prediction bar."""
        return self._new_bar(self.predict_description, 0, leave=True, smoothing=True)

    def init_validation_tqdm(self) -> Any:
        """The validation bar: below the training bar (and cleared when done) inside fit, kept on `validate`."""
        has_main_bar = self.trainer.state.fn != "validate"
        return self._new_bar(self.validation_description, int(has_main_bar), leave=not has_main_bar, smoothing=False)

    def init_test_tqdm(self) -> Any:
        """The test bar."""
        return self._new_bar(self.test_description, 0, leave=True, smoothing=False)

    # -- drawing ----------------------------------------------------------------------------------

    def _should_update(self, current: int, total: int | float | None) -> bool:
        return self.is_enabled and (current % self.refresh_rate == 0 or current == total)

    def _draw(self, bar: Any, current: int, trainer: Trainer | None = None,
              pl_module: LightningModule | None = None) -> None:
        """Show `current` on `bar` (with fresh metrics when `trainer` is given), at most ~10 times a second
        except for a bar's last batch."""
        if bar is None or bar.disable or not self._should_update(current, bar.total):
            return
        now = time.monotonic()
        if now - self._last_draw < _MIN_SECONDS_BETWEEN_REDRAWS and current != bar.total:
            bar.n = current  # keep the count right; the next redraw shows it
            return
        self._last_draw = now
        bar.n = current
        if trainer is not None and pl_module is not None:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()

    def _start_dataloader(self, bar: Any, total: int | float, description: str, dataloader_idx: int) -> None:
        bar.reset()
        bar.total = _convert_inf(total)
        bar.initial = 0
        bar.set_description(f"{description} DataLoader {dataloader_idx}")

    # -- sanity check and training ----------------------------------------------------------------

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar = self.init_sanity_tqdm()
        self.train_progress_bar = _tqdm()(disable=True)  # placeholder until training starts

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar.close()
        self.train_progress_bar.close()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._leave:
            if self._train_progress_bar is not None:
                self._train_progress_bar.close()  # closed now rather than when garbage-collected
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset()
        bar.total = _convert_inf(self.total_train_batches)
        bar.initial = 0
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._draw(self._train_progress_bar, batch_idx + 1, trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.set_postfix(self.get_metrics(trainer, pl_module))
        if self._leave:
            bar.close()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar.close()

    # -- validation and test ----------------------------------------------------------------------

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_progress_bar = self.init_validation_tqdm()

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            description = self.sanity_check_description if trainer.sanity_checking else self.validation_description
            self._start_dataloader(self.val_progress_bar, self.total_val_batches_current_dataloader, description,
                                   dataloader_idx)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw(self._val_progress_bar, batch_idx + 1)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar.close()
        self.reset_dataloader_idx_tracker()
        if self._train_progress_bar is not None and trainer.state.fn == "fit":
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_progress_bar = self.init_test_tqdm()

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._start_dataloader(self.test_progress_bar, self.total_test_batches_current_dataloader,
                                   self.test_description, dataloader_idx)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw(self._test_progress_bar, batch_idx + 1)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    # -- prediction -------------------------------------------------------------------------------

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.predict_progress_bar = self.init_predict_tqdm()

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._start_dataloader(self.predict_progress_bar, self.total_predict_batches_current_dataloader,
                                   self.predict_description, dataloader_idx)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw(self._predict_progress_bar, batch_idx + 1)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.predict_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar,
                    self._predict_progress_bar):
            if bar is not None:
                bar.close()

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print above the active bar without breaking it (plainly when no bar is showing)."""
        active = next((bar for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar,
                                       self._predict_progress_bar) if bar is not None and not bar.disable), None)
        if active is None:
            print(*args, sep=sep, **kwargs)
        else:
            active.write(sep.join(map(str, args)), file=kwargs.pop("file", sys.stdout), **kwargs)


def _convert_inf(total: int | float | None) -> int | float | None:
    """tqdm takes an unknown total as None, not inf/nan."""
    if total is None or math.isinf(total) or math.isnan(total):
        return None
    return total


def _resolve_refresh_rate(refresh_rate: int) -> int:
    # Lightning's environment overrides: Colab redraws every 20 batches; TQDM_MINITERS sets a minimum.
    if os.getenv("COLAB_GPU") and refresh_rate == 1:
        return 20
    if "TQDM_MINITERS" in os.environ:
        return max(int(os.environ["TQDM_MINITERS"]), refresh_rate)
    return refresh_rate
