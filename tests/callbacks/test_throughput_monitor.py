"""ThroughputMonitor: the keys, values and steps it logs.

The expected logs were recorded from Lightning 2.6.6's ThroughputMonitor on the same BoringModel runs with
the same fake clock (the n-th reading is 0.25·n·(n+1) seconds, so every interval differs and the
validation time taken off the training clock shows in the training rates). No real time is measured.
"""

from types import SimpleNamespace

import pytest

import fulmen as L
from fulmen.callbacks import ThroughputMonitor
from fulmen.callbacks import throughput_monitor as throughput_monitor_module
from fulmen.demos.boring_classes import BoringModel
from helpers.log_fixtures import RecordingLogger

KEYS = ("time", "batches", "samples", "lengths", "device/batches_per_sec", "device/items_per_sec",
        "device/flops_per_sec")


class FlopsModel(BoringModel):
    flops_per_batch = 1000


@pytest.fixture
def fake_clock(monkeypatch):
    readings = iter([0.25 * n * (n + 1) for n in range(10_000)])
    monkeypatch.setattr(throughput_monitor_module, "time", SimpleNamespace(perf_counter=lambda: next(readings)))


def _fit(tmp_path, accumulate=1, every=1, model=None):
    logger = RecordingLogger()
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch.size(0), length_fn=lambda batch: batch.numel(),
                                window_size=2)
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=6 // accumulate, limit_train_batches=4,
                        limit_val_batches=2, val_check_interval=2, accumulate_grad_batches=accumulate, logger=logger,
                        log_every_n_steps=every, callbacks=[monitor], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=1)
    trainer.fit(model or FlopsModel())
    return logger, trainer, monitor


def _table(logger):
    """(step, stage, epoch or None, values of KEYS present, rounded) per log call."""
    rows = []
    for step, metrics in logger.calls:
        stage = next(iter(metrics)).split("/")[0]
        values = tuple(metrics[f"{stage}/{key}"] for key in KEYS if f"{stage}/{key}" in metrics)
        rows.append((step, stage, metrics.get("epoch"), _r(values)))
    return rows


def _r(values):
    return tuple(round(value, 6) for value in values)


def test_fit_logs_train_and_validation_throughput(tmp_path, fake_clock):
    logger, _, _ = _fit(tmp_path)
    assert _table(logger) == [
        (0, "train", 0, _r((0.5, 1, 1, 32))),
        (1, "train", 0, _r((1.5, 2, 2, 64, 1.0, 32.0, 1000.0))),
        (1, "validate", None, _r((2.0, 1, 1, 32))),
        (2, "validate", None, _r((4.5, 2, 2, 64, 0.4, 12.8, 400.0))),
        (2, "train", 0, _r((4.5, 3, 3, 96, 1 / 3, 32 / 3, 1000 / 3))),  # validation time is not training time
        (3, "train", 0, _r((8.0, 4, 4, 128, 2 / 7, 64 / 7, 2000 / 7))),
        (3, "validate", None, _r((4.5, 1, 1, 32))),
        (4, "validate", None, _r((9.5, 2, 2, 64, 0.2, 6.4, 200.0))),
        (4, "train", 1, _r((13.5, 5, 5, 160, 2 / 11, 64 / 11, 2000 / 11))),
        (5, "train", 1, _r((19.5, 6, 6, 192, 1 / 6, 16 / 3, 500 / 3))),
        (1, "validate", None, _r((7.0, 1, 1, 32))),  # the validation count restarts with each training epoch
        (2, "validate", None, _r((14.5, 2, 2, 64, 2 / 15, 64 / 15, 2000 / 15))),
    ]
    assert set(logger.calls[1][1]) == {"train/time", "train/batches", "train/samples", "train/lengths",
                                       "train/device/batches_per_sec", "train/device/samples_per_sec",
                                       "train/device/items_per_sec", "train/device/flops_per_sec", "epoch"}


def test_accumulation_logs_once_per_optimizer_step_when_due(tmp_path, fake_clock):
    logger, _, _ = _fit(tmp_path, accumulate=2, every=2)
    rows = _table(logger)
    assert [(step, stage) for step, stage, _, _ in rows] == [(2, "validate"), (1, "train"), (4, "validate"),
                                                            (2, "validate")]
    assert rows[1] == (1, "train", 0, _r((8.0, 4, 4, 128, 2 / 7, 64 / 7, 2000 / 7)))


def test_test_runs_add_up_and_log_at_their_batch_count(tmp_path, fake_clock):
    logger, trainer, _ = _fit(tmp_path, accumulate=2, every=2)
    logger.calls.clear()
    trainer.test(FlopsModel(), verbose=False)
    rows = _table(logger)
    assert len(rows) == 32  # BoringModel's 64 test batches, logged every 2
    assert rows[:3] == [(2, "test", None, _r((17.5, 2, 2, 64, 1 / 9, 32 / 9, 1000 / 9))),
                        (4, "test", None, _r((37.0, 4, 4, 128, 0.1, 3.2, 100.0))),
                        (6, "test", None, _r((58.5, 6, 6, 192, 1 / 11, 32 / 11, 1000 / 11)))]
    logger.calls.clear()
    trainer.test(FlopsModel(), verbose=False)
    assert [row[:2] for row in _table(logger)[:2]] == [(66, "test"), (68, "test")]
    assert _table(logger)[0][3][:4] == (82.5, 66, 66, 2112)  # a second test run keeps counting (Lightning)


def test_predict_logs_its_throughput(tmp_path, fake_clock):
    logger, trainer, _ = _fit(tmp_path)
    logger.calls.clear()
    trainer.predict(FlopsModel())
    assert [row[:3] for row in _table(logger)] == [(n, "predict", None) for n in range(1, 65)]


def test_without_flops_per_batch_it_warns_and_logs_no_flops(tmp_path, fake_clock):
    with pytest.warns(UserWarning, match="flops_per_batch"):
        logger, _, _ = _fit(tmp_path, model=BoringModel())
    assert not any("flops" in key for _, metrics in logger.calls for key in metrics)


def test_unknown_throughput_argument_is_a_clear_error():
    with pytest.raises(TypeError, match=r"\['window'\].*window_size"):
        ThroughputMonitor(batch_size_fn=len, window=3)
