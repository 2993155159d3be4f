"""Turn a run's logged metrics into a PNG of curves: one panel per metric, train/val/test curves together.

Reads `metrics.csv` (CSVLogger) or TensorBoard event files from a run directory. matplotlib is an
optional dependency (`pip install fulmen[plot]`).
"""

from __future__ import annotations

import csv
import glob
import os
import re
from collections import defaultdict

_SKIPPED = {"epoch", "step", "hp_metric"}
_STAGE_PREFIX = re.compile(r"^(train|val|validation|test)[_/]")
_FORK_SUFFIX = re.compile(r"_(step|epoch)$")


def read_metrics(run_dir: str) -> dict[str, list[tuple[float, float, float]]]:
    """Return `{key: [(step, epoch, value), ...]}` from the run's metrics.csv or TensorBoard events."""
    csv_path = os.path.join(run_dir, "metrics.csv")
    if os.path.isfile(csv_path):
        return _read_csv(csv_path)
    if glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        return _read_tensorboard(run_dir)
    raise FileNotFoundError(
        f"No metrics.csv or TensorBoard event file in {run_dir!r}; pass a run directory such as "
        "lightning_logs/version_0."
    )


def _read_csv(path: str) -> dict[str, list[tuple[float, float, float]]]:
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            step = float(row.get("step") or 0)
            epoch = float(row["epoch"]) if row.get("epoch") else float("nan")
            for key, value in row.items():
                if key not in _SKIPPED and value not in ("", None):
                    series[key].append((step, epoch, float(value)))
    return dict(series)


def _read_tensorboard(run_dir: str) -> dict[str, list[tuple[float, float, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir)
    events.Reload()
    tags = events.Tags().get("scalars", [])
    epochs = {event.step: event.value for event in events.Scalars("epoch")} if "epoch" in tags else {}
    return {tag: [(float(e.step), epochs.get(e.step, float("nan")), float(e.value)) for e in events.Scalars(tag)]
            for tag in tags if tag not in _SKIPPED}


def panel_of(key: str) -> str:
    """The panel a metric goes to: `train_loss`, `val_loss` and `loss_epoch` all go to `loss`."""
    return _FORK_SUFFIX.sub("", _STAGE_PREFIX.sub("", key))


def plot_run(run_dir: str, out_path: str | None = None, x_axis: str = "step") -> tuple[str, list[str]]:
    """Write the PNG (default `<run_dir>/metrics.png`); return its path and the panel titles."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ModuleNotFoundError("Plotting needs matplotlib: `pip install matplotlib` (or fulmen[plot]).") from error
    if x_axis not in ("step", "epoch"):
        raise ValueError(f"x_axis must be 'step' or 'epoch'; received {x_axis!r}.")
    series = read_metrics(run_dir)
    panels: dict[str, list[str]] = defaultdict(list)
    for key in sorted(series):
        panels[panel_of(key)].append(key)
    if not panels:
        raise ValueError(f"The run in {run_dir!r} logged no metrics to plot.")
    titles = sorted(panels)
    columns = min(3, len(titles))
    rows = -(-len(titles) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, title in zip(axes.flat, titles):
        for key in panels[title]:
            points = series[key]
            xs = [point[0] if x_axis == "step" else point[1] for point in points]
            ys = [point[2] for point in points]
            axis.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        axis.set_title(title)
        axis.set_xlabel(x_axis)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(titles):]:
        axis.set_visible(False)
    figure.suptitle(os.path.abspath(run_dir), fontsize="small")
    figure.tight_layout()
    out_path = out_path or os.path.join(run_dir, "metrics.png")
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path, titles
