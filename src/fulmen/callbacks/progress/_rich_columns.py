"""The rich columns of `RichProgressBar` (imports rich: loaded only when a RichProgressBar starts drawing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from rich.progress import BarColumn, ProgressColumn, Task, TextColumn
from rich.text import Text


class BatchesProcessedColumn(ProgressColumn):
    """`3/10` (`3/--` for a dataloader without length)."""

    def __init__(self, style: Any) -> None:
        self.style = style
        super().__init__()

    def render(self, task: Task) -> Text:
        total = "--" if task.total is None else int(task.total)
        return Text(f"{int(task.completed)}/{total}", style=self.style)


class TimeColumn(ProgressColumn):
    """`0:00:04 • 0:00:12`: elapsed, then remaining (`-:--:--` when unknown)."""

    max_refresh = 0.5

    def __init__(self, style: Any) -> None:
        self.style = style
        super().__init__()

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        remaining = task.time_remaining

        def clock(seconds: float | None) -> str:
            return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))

        return Text(f"{clock(elapsed)} • {clock(remaining)}", style=self.style)


class SpeedColumn(ProgressColumn):
    """`12.34it/s`."""

    def __init__(self, style: Any) -> None:
        self.style = style
        super().__init__()

    def render(self, task: Task) -> Text:
        speed = "0.00" if task.speed is None else f"{task.speed:>.2f}"
        return Text(f"{speed}it/s", style=self.style)


class MetricsColumn(ProgressColumn):
    """`name: value` pairs of the metrics, shown on the training task only (`shows_metrics(task)` decides)."""

    def __init__(self, shows_metrics: Callable[[Task], bool], style: Any, delimiter: str, number_format: str) -> None:
        self._shows_metrics = shows_metrics
        self._style = style
        self._delimiter = delimiter
        self._format = number_format
        self.metrics: dict[str, Any] = {}
        super().__init__()

    def render(self, task: Task) -> Text:
        if not self._shows_metrics(task):
            return Text()
        return Text(self._delimiter.join(f"{name}: {self._text(value)}" for name, value in self.metrics.items()),
                    justify="left", style=self._style)

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        try:
            return f"{value:{self._format}}"  # every number, the integer `v_num` too: "v_num: 0.000" as Lightning
        except (TypeError, ValueError):
            return str(value)


def default_columns(theme: Any) -> list[ProgressColumn]:
    """Description, bar, batches, time and speed columns styled by `theme` (a `RichProgressBarTheme`)."""
    return [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(complete_style=theme.progress_bar, finished_style=theme.progress_bar_finished,
                  pulse_style=theme.progress_bar_pulse),
        BatchesProcessedColumn(style=theme.batch_progress),
        TimeColumn(style=theme.time),
        SpeedColumn(style=theme.processing_speed),
    ]
