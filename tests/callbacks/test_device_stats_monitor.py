"""DeviceStatsMonitor: which hooks log, at which steps, under which keys.

The expected `(step, hook)` sequences were recorded from Lightning 2.6.6's DeviceStatsMonitor (with psutil
installed) on BoringModel runs with the same Trainer flags. psutil is not a fulmen dependency, so the tests
install a fake `psutil` module with fixed readings.
"""

import sys
from types import SimpleNamespace

import pytest
import torch

import fulmen as L
from fulmen.callbacks import DeviceStatsMonitor
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.log_fixtures import RecordingLogger

PREFIX = "DeviceStatsMonitor."


@pytest.fixture
def fake_psutil(monkeypatch):
    module = SimpleNamespace(virtual_memory=lambda: SimpleNamespace(percent=41.0), cpu_percent=lambda: 12.5,
                             swap_memory=lambda: SimpleNamespace(percent=3.0))
    monkeypatch.setitem(sys.modules, "psutil", module)
    return module


def _trainer(tmp_path, logger, every, monitor=None):
    return L.Trainer(default_root_dir=tmp_path, max_steps=4, limit_train_batches=3, limit_val_batches=2,
                     logger=logger, log_every_n_steps=every, callbacks=[monitor or DeviceStatsMonitor()],
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def _hooks(logger):
    """`(step, hook)` per log call; every call holds the three CPU stats of one hook."""
    out = []
    for step, metrics in logger.calls:
        hooks = {key.split("/")[0] for key in metrics}
        assert len(hooks) == 1 and len(metrics) == 3
        out.append((step, hooks.pop()[len(PREFIX):]))
    return out


def test_logs_cpu_stats_with_lightning_keys_and_values(tmp_path, fake_psutil):
    logger = RecordingLogger()
    _trainer(tmp_path, logger, every=2).fit(BoringModel())
    step, metrics = logger.calls[2]
    assert (step, metrics) == (1, {"DeviceStatsMonitor.on_train_batch_start/cpu_vm_percent": 41.0,
                                   "DeviceStatsMonitor.on_train_batch_start/cpu_percent": 12.5,
                                   "DeviceStatsMonitor.on_train_batch_start/cpu_swap_percent": 3.0})


@pytest.mark.parametrize(("every", "expected"), [
    # The sanity check logs by its own batch count (2 batches: the second is due with every=2), at step 0;
    # training when the Trainer's step is due; the validation inside the epoch's last batch by its batch count,
    # at that batch's step.
    (1, [(0, "on_validation_batch_start"), (0, "on_validation_batch_end"), (0, "on_validation_batch_start"),
         (0, "on_validation_batch_end"), (0, "on_train_batch_start"), (0, "on_train_batch_end"),
         (1, "on_train_batch_start"), (1, "on_train_batch_end"), (2, "on_train_batch_start"),
         (2, "on_train_batch_end"), (2, "on_validation_batch_start"), (2, "on_validation_batch_end"),
         (2, "on_validation_batch_start"), (2, "on_validation_batch_end"), (3, "on_train_batch_start"),
         (3, "on_train_batch_end")]),
    (2, [(0, "on_validation_batch_start"), (0, "on_validation_batch_end"), (1, "on_train_batch_start"),
         (1, "on_train_batch_end"), (2, "on_validation_batch_start"), (2, "on_validation_batch_end"),
         (3, "on_train_batch_start"), (3, "on_train_batch_end")]),
    (3, [(2, "on_train_batch_start"), (2, "on_train_batch_end")]),
])
def test_logs_when_lightning_does(tmp_path, fake_psutil, every, expected):
    logger = RecordingLogger()
    _trainer(tmp_path, logger, every).fit(BoringModel())
    assert _hooks(logger) == expected


def test_validate_and_test_log_their_batches(tmp_path, fake_psutil):
    logger = RecordingLogger()
    trainer = _trainer(tmp_path, logger, every=2)
    trainer.fit(BoringModel())
    logger.calls.clear()
    trainer.validate(BoringModel(), verbose=False)
    assert _hooks(logger) == [(4, "on_validation_batch_start"), (4, "on_validation_batch_end")]
    logger.calls.clear()
    trainer.predict(BoringModel())
    assert logger.calls == []  # predict batches are not monitored (Lightning)


def test_cpu_stats_false_logs_nothing_on_cpu(tmp_path, fake_psutil):
    logger = RecordingLogger()
    _trainer(tmp_path, logger, every=1, monitor=DeviceStatsMonitor(cpu_stats=False)).fit(BoringModel())
    assert logger.calls == []


def test_needs_a_logger(tmp_path, fake_psutil):
    trainer = _trainer(tmp_path, False, every=1)
    with pytest.raises(MisconfigurationException, match=r"Trainer\(logger=False\)"):
        trainer.fit(BoringModel())


def test_missing_psutil_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    with pytest.raises(ModuleNotFoundError, match="pip install psutil"):
        _trainer(tmp_path, RecordingLogger(), every=1).fit(BoringModel())
    # Not needed when CPU stats are off.
    _trainer(tmp_path, RecordingLogger(), every=1, monitor=DeviceStatsMonitor(cpu_stats=False)).fit(BoringModel())


def test_cpu_accelerator_reports_psutil_stats(fake_psutil):
    from fulmen.accelerators import CPUAccelerator

    assert CPUAccelerator().get_device_stats("cpu") == {"cpu_vm_percent": 41.0, "cpu_percent": 12.5,
                                                        "cpu_swap_percent": 3.0}


def test_mps_accelerator_reports_lightnings_m1_keys(fake_psutil):
    from fulmen.accelerators import MPSAccelerator

    assert MPSAccelerator().get_device_stats("mps") == {"M1_vm_percent": 41.0, "M1_percent": 12.5,
                                                        "M1_swap_percent": 3.0}


@pytest.mark.parametrize(("cpu_stats", "cpu_keys"), [(None, False), (False, False), (True, True)])
def test_on_a_gpu_cpu_stats_true_adds_the_cpu_stats(fake_psutil, cpu_stats, cpu_keys):
    # No GPU needed: a stand-in Trainer on "cuda" whose accelerator reports one CUDA memory statistic.
    logger = RecordingLogger()
    trainer = SimpleNamespace(
        state=SimpleNamespace(batches_that_stepped=4, should_stop=False), log_every_n_steps=1, loggers=[logger],
        strategy=SimpleNamespace(root_device=torch.device("cuda", 0)),
        accelerator=SimpleNamespace(get_device_stats=lambda device: {"allocated_bytes.all.current": 512}))
    DeviceStatsMonitor(cpu_stats=cpu_stats).on_train_batch_end(trainer, None, None, None, 0)
    expected = {"DeviceStatsMonitor.on_train_batch_end/allocated_bytes.all.current": 512.0}
    if cpu_keys:
        expected.update({"DeviceStatsMonitor.on_train_batch_end/cpu_vm_percent": 41.0,
                         "DeviceStatsMonitor.on_train_batch_end/cpu_percent": 12.5,
                         "DeviceStatsMonitor.on_train_batch_end/cpu_swap_percent": 3.0})
    assert logger.calls == [(4, expected)]
