"""`python -m fulmen plot RUN_DIR` and `fulmen.plotting.plot_run`: a PNG of a run's curves, one panel per metric."""

import os
import subprocess
import sys

import pytest
import torch

import fulmen
from fulmen.__main__ import main
from fulmen.loggers import CSVLogger, TensorBoardLogger
from helpers.log_fixtures import LossLoggingModule, fit_with

pytest.importorskip("matplotlib")
from fulmen.plotting import panel_of, plot_run, read_metrics  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli(*args):
    """Run `python -m fulmen ...` in a fresh interpreter that imports this checkout's fulmen."""
    src = os.path.dirname(os.path.dirname(fulmen.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "fulmen", *args], capture_output=True, text=True, env=env,
                          timeout=120)


class _AccuracyModule(LossLoggingModule):
    """Logs train_loss per step, and val_loss plus val_acc per epoch."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())


@pytest.fixture
def csv_run(tmp_path):
    logger = CSVLogger(tmp_path)
    fit_with(tmp_path, logger, _AccuracyModule(), every=1)
    return tmp_path / "lightning_logs" / "version_0"


def _assert_png(path):
    image = pytest.importorskip("matplotlib.image")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_cli_plots_a_csv_run(csv_run):
    result = _cli("plot", str(csv_run))
    assert result.returncode == 0, result.stderr
    assert "metrics.png" in result.stdout and "acc, loss" in result.stdout
    _assert_png(csv_run / "metrics.png")


def test_cli_without_metrics_exits_2_with_message(tmp_path):
    result = _cli("plot", str(tmp_path))
    assert result.returncode == 2
    assert "No metrics.csv or TensorBoard event file" in result.stderr
    assert "lightning_logs/version_0" in result.stderr  # says what to pass instead
    assert not list(tmp_path.iterdir())


def test_plot_run_groups_metrics_into_panels(csv_run):
    path, panels = plot_run(str(csv_run))
    assert panels == ["acc", "loss"]  # train_loss + val_loss share "loss"; val_acc is "acc"; epoch is skipped
    assert path == str(csv_run / "metrics.png")
    _assert_png(csv_run / "metrics.png")


@pytest.mark.parametrize("key, panel", [
    ("train_loss", "loss"), ("val_loss", "loss"), ("test_loss", "loss"), ("validation/acc", "acc"),
    ("loss_epoch", "loss"), ("train_acc_step", "acc"), ("lr-SGD", "lr-SGD"), ("val_acc/dataloader_idx_0",
                                                                                "acc/dataloader_idx_0"),
])
def test_panel_names(key, panel):
    assert panel_of(key) == panel


def test_read_metrics_from_csv_has_step_and_epoch(csv_run):
    series = read_metrics(str(csv_run))
    assert set(series) == {"train_loss", "val_loss", "val_acc"}
    assert [(step, epoch) for step, epoch, _ in series["train_loss"]] == [(s, s // 3) for s in range(6)]
    assert [(step, epoch) for step, epoch, _ in series["val_loss"]] == [(2, 0), (5, 1)]


def test_plot_run_works_on_tensorboard_run(tmp_path):
    pytest.importorskip("tensorboard")
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger, _AccuracyModule(), every=1)
    series = read_metrics(logger.log_dir)
    assert set(series) == {"train_loss", "val_loss", "val_acc"}  # hp_metric and epoch are not curves
    assert [epoch for _, epoch, _ in series["val_loss"]] == [0.0, 1.0]
    out = tmp_path / "tb.png"
    path, panels = plot_run(logger.log_dir, str(out))
    assert (path, panels) == (str(out), ["acc", "loss"])
    _assert_png(out)


def test_x_epoch_option(csv_run, tmp_path, capsys):
    out = tmp_path / "by_epoch.png"
    assert main(["plot", str(csv_run), "--x", "epoch", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    _assert_png(out)


def test_run_without_metric_columns_exits_2(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("epoch,step\n0,0\n0,1\n")
    assert main(["plot", str(tmp_path)]) == 2
    assert "logged no metrics" in capsys.readouterr().err


def test_invalid_x_axis_is_rejected(csv_run):
    with pytest.raises(ValueError, match="x_axis.*'step' or 'epoch'.*'time'"):
        plot_run(str(csv_run), x_axis="time")
    with pytest.raises(SystemExit):
        main(["plot", str(csv_run), "--x", "time"])
