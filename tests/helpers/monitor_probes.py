"""Probes for the constructor parameters of DeviceStatsMonitor and ThroughputMonitor (used by
`tests/test_signatures_components.py`): each passes a non-default value and checks what it changes."""

import sys
from types import SimpleNamespace

from fulmen.callbacks import DeviceStatsMonitor, ThroughputMonitor
from helpers.log_fixtures import RecordingLogger
from helpers.signature_probes import fit, raises

_FAKE_PSUTIL = SimpleNamespace(virtual_memory=lambda: SimpleNamespace(percent=41.0), cpu_percent=lambda: 12.5,
                               swap_memory=lambda: SimpleNamespace(percent=3.0))


def _device_stats_logged(tmp, psutil, **options):
    logger = RecordingLogger()
    # Only the `psutil` entry is swapped: restoring all of sys.modules would drop modules torch loads meanwhile.
    missing = object()
    saved = sys.modules.get("psutil", missing)
    sys.modules["psutil"] = psutil  # None makes `import psutil` fail
    try:
        fit(tmp, callbacks=[DeviceStatsMonitor(**options)], logger=logger, log_every_n_steps=1)
    finally:
        if saved is missing:
            del sys.modules["psutil"]
        else:
            sys.modules["psutil"] = saved
    return [key for _, metrics in logger.calls for key in metrics]


def _cpu_stats(tmp):
    """On the CPU: the default logs psutil's stats; False logs none (and needs no psutil)."""
    logged = _device_stats_logged(tmp, _FAKE_PSUTIL)
    return ("DeviceStatsMonitor.on_train_batch_end/cpu_percent" in logged
            and _device_stats_logged(tmp, None, cpu_stats=False) == []
            and raises(ModuleNotFoundError, "psutil", lambda: _device_stats_logged(tmp, None)))


DEVICE_STATS_MONITOR = {"cpu_stats": _cpu_stats}


def _throughput_logged(tmp, **options):
    """The last training values ThroughputMonitor logged over a 2-batch epoch."""
    options.setdefault("batch_size_fn", lambda batch: batch[0].size(0))
    logger = RecordingLogger()
    fit(tmp, callbacks=[ThroughputMonitor(**options)], logger=logger, log_every_n_steps=1)
    return logger.calls[-1][1]


THROUGHPUT_MONITOR = {
    "batch_size_fn": lambda tmp: _throughput_logged(tmp, batch_size_fn=lambda batch: 3)["train/samples"] == 6,
    "length_fn": lambda tmp: _throughput_logged(tmp, length_fn=lambda batch: 100)["train/lengths"] == 200
    and "train/lengths" not in _throughput_logged(tmp),
    "kwargs": lambda tmp: "train|device|samples_per_sec" in _throughput_logged(tmp, window_size=2, separator="|")
    and raises(TypeError, "window_size", lambda: ThroughputMonitor(len, windows=2)),
}
