"""Time-based `val_check_interval` (timedelta, dict, "DD:HH:MM:SS"), on a fake clock.

The expected schedules were produced by Lightning 2.6.6 running the same module with `time.monotonic`
replaced by the same fake clock (each training step +10 s, each validation step +1 s).
"""

import time
from datetime import timedelta

import pytest
import torch

from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import quiet_trainer


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


class Timed(BoringModel):
    def __init__(self, clock):
        super().__init__()
        self.clock, self.schedule = clock, ["sanity"]

    def training_step(self, batch, batch_idx):
        self.clock[0] += 10
        self.schedule.append(f"{self.current_epoch}.{batch_idx}")
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.schedule[-1] += "V"
        self.clock[0] += 1


def _schedule(tmp_path, clock, **flags):
    module = Timed(clock)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=1,
                            **flags)
    trainer.fit(module)
    return " ".join(module.schedule)


@pytest.mark.parametrize(("flags", "expected"), [
    # Validation once 25 s passed since the last one (or since training started), not at epoch ends.
    (dict(val_check_interval=timedelta(seconds=25)), "sanityV 0.0 0.1 0.2V 0.3 1.0 1.1V 1.2 1.3 2.0V 2.1 2.2 2.3V"),
    (dict(val_check_interval={"seconds": 25}, check_val_every_n_epoch=None),
     "sanityV 0.0 0.1 0.2V 0.3 1.0 1.1V 1.2 1.3 2.0V 2.1 2.2 2.3V"),
    # Only in epochs that are multiples of N; time that passed before runs it after that epoch's first batch.
    (dict(val_check_interval="00:00:00:25", check_val_every_n_epoch=2),
     "sanityV 0.0 0.1 0.2 0.3 1.0V 1.1 1.2 1.3V 2.0 2.1 2.2 2.3"),
    (dict(val_check_interval=timedelta(seconds=100), check_val_every_n_epoch=3),
     "sanityV 0.0 0.1 0.2 0.3 1.0 1.1 1.2 1.3 2.0 2.1V 2.2 2.3"),
    (dict(val_check_interval=timedelta(0)), "sanityV " + " ".join(f"{e}.{b}V" for e in range(3) for b in range(4))),
])
def test_validation_schedule(tmp_path, clock, flags, expected):
    assert _schedule(tmp_path, clock, **flags) == expected


def test_trainer_keeps_the_interval_as_a_timedelta(tmp_path):
    # Known difference: Lightning 2.6.6 leaves `trainer.val_check_interval` unset when it is time-based
    # (AttributeError); fulmen gives the parsed timedelta.
    assert quiet_trainer(tmp_path, val_check_interval="01:02:03:04").val_check_interval == timedelta(
        days=1, hours=2, minutes=3, seconds=4)
    assert quiet_trainer(tmp_path, val_check_interval={"minutes": 1}).val_check_interval == timedelta(minutes=1)


@pytest.mark.parametrize(("value", "match"), [
    ("1:2:3", "'DD:HH:MM:SS'"),
    ("00:00:aa:00", "'DD:HH:MM:SS'"),
    ({"foo": 1}, "keyword arguments of `datetime.timedelta`"),
    (-1, "int >= 1"),
    ([1], "or a duration"),
])
def test_invalid_intervals(tmp_path, value, match):
    with pytest.raises(MisconfigurationException, match=match):
        quiet_trainer(tmp_path, val_check_interval=value)


def test_fast_dev_run_drops_the_time_interval(tmp_path, clock):
    module = Timed(clock)
    trainer = quiet_trainer(tmp_path, fast_dev_run=2, val_check_interval=timedelta(hours=1))
    trainer.fit(module)
    assert trainer.val_check_interval == 1.0
    assert module.schedule == ["sanity", "0.0", "0.1V"]


def test_early_stopping_checks_after_each_time_based_validation(tmp_path, clock):
    # Known difference: Lightning 2.6.6's EarlyStopping.setup fails here (it reads the unset
    # `trainer.val_check_interval`); fulmen checks after each validation, as for any interval other than 1.0.
    from fulmen.callbacks import EarlyStopping

    class Logged(Timed):
        def validation_step(self, batch, batch_idx):
            super().validation_step(batch, batch_idx)
            self.log("val", torch.tensor(1.0))

    module = Logged(clock)
    stopper = EarlyStopping("val", patience=1)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=0,
                            val_check_interval=timedelta(seconds=25), callbacks=[stopper])
    trainer.fit(module)
    # No improvement after the first validation (0.2): the second one (1.1) stops training.
    assert " ".join(module.schedule) == "sanity 0.0 0.1 0.2V 0.3 1.0 1.1V"
    assert trainer.should_stop
