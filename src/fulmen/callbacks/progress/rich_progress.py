"""RichProgressBar: progress bars drawn with `rich` (an optional extra: `pip install rich`), imported only when a
bar is created, so `import fulmen` does not load it."""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.progress.progress_bar import SwitchableProgressBar

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


def _require_rich(name: str) -> None:
    if importlib.util.find_spec("rich") is None:
        raise ModuleNotFoundError(f"`{name}` requires `rich` >= 10.2.2. Install it by running `pip install -U rich` "
                                  "(or `pip install fulmen[rich]`).")


@dataclass
class RichProgressBarTheme:
    """Styles (rich style strings or `rich.style.Style`) of the bar's parts, and how metrics are written."""

    description: Any = ""
    progress_bar: Any = "#6206E0"
    progress_bar_finished: Any = "#6206E0"
    progress_bar_pulse: Any = "#6206E0"
    batch_progress: Any = ""
    time: Any = "dim"
    processing_speed: Any = "dim underline"
    metrics: Any = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichProgressBar(SwitchableProgressBar):
    """Progress bars drawn with rich: description, bar, `done/total`, elapsed • remaining, speed, metrics.

    Args:
        refresh_rate: redraws per second; 0 disables the bars.
        leave: keep each finished epoch's bar on screen.
        theme: the styles, a `RichProgressBarTheme`.
        console_kwargs: arguments of `rich.reconfigure` for the console the bars draw on (e.g. `file`, `width`).
    """

    def __init__(self, refresh_rate: int = 100, leave: bool = False,
                 theme: RichProgressBarTheme = RichProgressBarTheme(),  # noqa: B008 - Lightning's default
                 console_kwargs: dict[str, Any] | None = None) -> None:
        _require_rich("RichProgressBar")
        missing = [name for name in RichProgressBarTheme.__dataclass_fields__ if not hasattr(theme, name)]
        if missing:
            raise TypeError(f"`theme` must be a `RichProgressBarTheme` (got {type(theme).__name__}, which lacks "
                            f"{missing}); build one with `RichProgressBarTheme(description=..., ...)`.")
        super().__init__(refresh_rate)
        self._leave = leave
        self._console_kwargs = dict(console_kwargs or {})
        self._console: Any = None
        self.theme = theme
        self.progress: Any = None
        self._progress_stopped = False
        self._metric_component: Any = None
        self._last_metrics_read = 0.0
        self._reset_progress_bar_ids()

    def _reset_progress_bar_ids(self) -> None:
        self.train_progress_bar_id: Any = None
        self.val_sanity_progress_bar_id: Any = None
        self.val_progress_bar_id: Any = None
        self.test_progress_bar_id: Any = None
        self.predict_progress_bar_id: Any = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "progress": None, "_console": None, "_metric_component": None}

    def _task(self, task_id: Any, name: str) -> Any:
        if self.progress is None or task_id is None:
            raise TypeError(f"The `{type(self).__name__}` {name} has not been created yet; it exists once its stage "
                            "has started.")
        return self.progress.tasks[task_id]

    @property
    def train_progress_bar(self) -> Any:
        """The rich `Task` of the training bar."""
        return self._task(self.train_progress_bar_id, "training bar")

    @property
    def val_sanity_check_bar(self) -> Any:
        return self._task(self.val_sanity_progress_bar_id, "sanity-check bar")

    @property
    def val_progress_bar(self) -> Any:
        return self._task(self.val_progress_bar_id, "validation bar")

    @property
    def test_progress_bar(self) -> Any:
        return self._task(self.test_progress_bar_id, "test bar")

    def configure_columns(self, trainer: Trainer) -> list:
        """The rich columns before the metrics; override to change the layout."""
        from fulmen.callbacks.progress._rich_columns import default_columns

        return default_columns(self.theme)

    # -- the rich Progress ------------------------------------------------------------------------

    def _init_progress(self, trainer: Trainer) -> None:
        if not self.is_enabled or (self.progress is not None and not self._progress_stopped):
            return
        from rich import get_console, reconfigure
        from rich.progress import Progress

        from fulmen.callbacks.progress._rich_columns import MetricsColumn

        self._reset_progress_bar_ids()
        reconfigure(**self._console_kwargs)
        self._console = get_console()
        if getattr(self._console, "_live_stack", None):
            self._console.clear_live()  # a display left live (e.g. by an interrupted run) would block ours
        self._metric_component = MetricsColumn(self._shows_metrics, self.theme.metrics,
                                               self.theme.metrics_text_delimiter, self.theme.metrics_format)
        self.progress = Progress(*self.configure_columns(trainer), self._metric_component, auto_refresh=True,
                                 refresh_per_second=self.refresh_rate, disable=self.is_disabled,
                                 console=self._console)
        self.progress.start()
        self._progress_stopped = False

    def _shows_metrics(self, task: Any) -> bool:
        trainer = self._trainer
        return (trainer is not None and trainer.state.fn == "fit" and not trainer.sanity_checking
                and task.id == self.train_progress_bar_id)

    def refresh(self, hard: bool = False) -> None:
        """Redraw now when `hard`; otherwise rich's refresh thread redraws at `refresh_rate` per second."""
        if self.progress is not None and hard:
            self.progress.refresh()

    def _add_task(self, total: int | float, description: str, visible: bool = True) -> Any:
        if self.theme.description:
            description = f"[{self.theme.description}]{description}"
        return self.progress.add_task(description, total=None if math.isinf(total) else total, visible=visible)

    def _update(self, task_id: Any, current: int, visible: bool = True) -> None:
        if self.progress is not None and self.is_enabled and task_id is not None:
            self.progress.update(task_id, completed=current, visible=visible)

    def _hide(self, task_id: Any) -> None:
        if self.progress is not None and task_id is not None:
            self.progress.update(task_id, advance=0, visible=False)

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self._progress_stopped = True

    def _train_description(self, epoch: int) -> str:
        description = f"Epoch {epoch}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs - 1}"
        # Padded to the validation description's width, so the bars line up.
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """The base metrics with tensors turned into Python numbers."""
        import torch

        return {name: value.item() if isinstance(value, torch.Tensor) else value
                for name, value in super().get_metrics(trainer, pl_module).items()}

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule, force: bool = True) -> None:
        if not self.is_enabled or self._metric_component is None:
            return
        now = time.monotonic()
        # Per batch, read the metrics no more often than the bar redraws (reading them may sync the device).
        if not force and now - self._last_metrics_read < 1 / max(self.refresh_rate, 1):
            return
        self._last_metrics_read = now
        self._metric_component.metrics = self.get_metrics(trainer, pl_module)

    # -- hooks ------------------------------------------------------------------------------------

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hide(self.val_sanity_progress_bar_id)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_disabled:
            return
        description = self._train_description(trainer.current_epoch)
        if self.train_progress_bar_id is not None and self._leave:
            self._stop_progress()  # the finished epoch's bar stays printed
            self._init_progress(trainer)
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add_task(self.total_train_batches, description)
        else:
            total = self.total_train_batches
            self.progress.reset(self.train_progress_bar_id, total=None if math.isinf(total) else total,
                                description=description, visible=True)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._update(self.train_progress_bar_id, batch_idx + 1)
        self._update_metrics(trainer, pl_module, force=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_metrics(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if self.is_disabled or not self.has_dataloader_changed(dataloader_idx):
            return
        total = self.total_val_batches_current_dataloader
        if trainer.sanity_checking:
            self._hide(self.val_sanity_progress_bar_id)
            self.val_sanity_progress_bar_id = self._add_task(total, self.sanity_check_description, visible=False)
        else:
            self._hide(self.val_progress_bar_id)
            self.val_progress_bar_id = self._add_task(total, self.validation_description, visible=False)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.is_disabled:
            task = self.val_sanity_progress_bar_id if trainer.sanity_checking else self.val_progress_bar_id
            self._update(task, batch_idx + 1)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and trainer.state.fn == "fit":
            self._hide(self.val_progress_bar_id)  # inside fit the validation bar goes when validation ends

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._update_metrics(trainer, pl_module)
        self.reset_dataloader_idx_tracker()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if self.is_disabled or not self.has_dataloader_changed(dataloader_idx):
            return
        self._hide(self.test_progress_bar_id)
        self.test_progress_bar_id = self._add_task(self.total_test_batches_current_dataloader, self.test_description)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.is_disabled:
            self._update(self.test_progress_bar_id, batch_idx + 1)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        if self.is_disabled or not self.has_dataloader_changed(dataloader_idx):
            return
        self._hide(self.predict_progress_bar_id)
        self.predict_progress_bar_id = self._add_task(self.total_predict_batches_current_dataloader,
                                                      self.predict_description)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.is_disabled:
            self._update(self.predict_progress_bar_id, batch_idx + 1)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop_progress()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop_progress()
