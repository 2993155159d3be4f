"""Timer: stage times, the duration stop (per step or per epoch), and the training time carried by checkpoints.

A fake clock replaces `time.monotonic`: training batches take 10 s, validation batches 1 s, test batches 2 s.
Expected numbers were recorded from Lightning 2.6.6 with the same clock and model.
"""

from datetime import timedelta

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
import fulmen.callbacks.timer as timer_module
from fulmen.callbacks import Timer
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import quiet_trainer


class Tick(L.Callback):
    def __init__(self, clock):
        self.clock = clock

    def on_train_batch_end(self, *args):
        self.clock[0] += 10

    def on_validation_batch_end(self, *args):
        self.clock[0] += 1

    def on_test_batch_end(self, *args):
        self.clock[0] += 2


class Linear(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def test_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(timer_module.time, "monotonic", lambda: now[0])
    return now


def loader():
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)  # 4 batches


def fit(tmp_path, clock, timer, max_epochs=5, ckpt_path=None):
    trainer = quiet_trainer(tmp_path, max_epochs=max_epochs, callbacks=[Tick(clock), timer])
    trainer.fit(Linear(), loader(), loader(), ckpt_path=ckpt_path)
    return trainer


def test_duration_string_stops_fit_after_the_step_that_reaches_it(tmp_path, clock, caplog):
    timer = Timer(duration="00:00:00:25")
    trainer = fit(tmp_path, clock, timer)
    assert (trainer.global_step, trainer.current_epoch) == (3, 1)  # 30 s >= 25 s after the third batch
    assert timer.start_time() == 1002.0 and timer.end_time() == 1036.0  # sanity check: 2 validation batches
    assert timer.time_elapsed() == 34.0 and timer.time_remaining() == -9.0
    assert (timer.start_time("validate"), timer.end_time("validate"), timer.time_elapsed("validate")) == (
        1032.0, 1036.0, 4.0)
    assert timer.state_dict() == {"time_elapsed": {"train": 34.0, "sanity_check": 0, "validate": 4.0, "test": 0,
                                                   "predict": 0}}
    assert "Time limit reached. Elapsed time is 0:00:30. Signaling Trainer to stop." in caplog.text


def test_epoch_interval_checks_only_at_epoch_end(tmp_path, clock):
    timer = Timer(duration={"seconds": 35}, interval="epoch")
    trainer = fit(tmp_path, clock, timer)
    assert (trainer.global_step, trainer.current_epoch) == (4, 1)
    assert timer.time_elapsed() == 44.0


def test_timedelta_duration_and_verbose_false(tmp_path, clock, caplog):
    timer = Timer(duration=timedelta(seconds=15), verbose=False)
    trainer = fit(tmp_path, clock, timer)
    assert trainer.global_step == 2
    assert "Time limit reached" not in caplog.text


def test_resume_carries_the_training_time(tmp_path, clock):
    trainer = fit(tmp_path, clock, Timer(duration="00:00:00:25"))
    trainer.save_checkpoint(tmp_path / "timer.ckpt")
    timer = Timer(duration={"seconds": 65}, verbose=False)
    trainer = fit(tmp_path, clock, timer, max_epochs=10, ckpt_path=tmp_path / "timer.ckpt")
    assert (trainer.global_step, trainer.current_epoch) == (7, 2)  # 34 s restored + 4 batches = 74 s >= 65 s
    assert timer.time_elapsed() == 78.0 and timer.time_remaining() == -13.0


def test_a_spent_budget_stops_before_training(tmp_path, clock):
    trainer = fit(tmp_path, clock, Timer(duration="00:00:00:25"))
    trainer.save_checkpoint(tmp_path / "timer.ckpt")
    timer = Timer(duration={"seconds": 20})
    trainer = fit(tmp_path, clock, timer, max_epochs=10, ckpt_path=tmp_path / "timer.ckpt")
    assert trainer.global_step == 3  # nothing trained after the restore
    assert timer.start_time() is None and timer.time_elapsed() == 34.0 and timer.time_elapsed("validate") == 2.0


def test_without_duration_only_measures_and_test_stage_is_timed(tmp_path, clock):
    timer = Timer()
    trainer = fit(tmp_path, clock, timer, max_epochs=1)
    assert trainer.global_step == 4 and timer.time_elapsed() == 44.0 and timer.time_remaining() is None
    trainer.test(Linear(), loader())
    assert timer.time_elapsed("test") == 8.0 and timer.time_remaining("test") is None
    assert timer.time_elapsed("predict") == 0 and timer.start_time("predict") is None


def test_time_elapsed_is_live_while_a_stage_runs(clock):
    timer = Timer()
    timer.on_train_start(None, None)
    clock[0] += 7
    assert timer.time_elapsed() == 7.0 and timer.end_time() is None


def test_bad_arguments_name_the_fix():
    with pytest.raises(MisconfigurationException, match="DD:HH:MM:SS"):
        Timer(duration="1:2:3")
    with pytest.raises(MisconfigurationException, match=r"`Timer\(interval=batch\)`. Possible choices are: step, epoch"):
        Timer(interval="batch")
    with pytest.raises(TypeError, match="str, a timedelta or a dict"):
        Timer(duration=30)
    with pytest.raises(ValueError, match="'foo' is not a stage"):
        Timer().time_elapsed("foo")


# -- Trainer(max_time=...) is a Timer callback, as in Lightning ---------------------------------------------------


def test_max_time_adds_a_step_timer_before_the_default_callbacks(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, max_time={"minutes": 5},
                        callbacks=[L.callbacks.EarlyStopping("loss")])
    names = [type(callback).__name__ for callback in trainer.callbacks]
    assert names == ["EarlyStopping", "Timer", "TQDMProgressBar", "ModelSummary", "ModelCheckpoint"]
    timer = trainer.callbacks[1]
    assert timer.time_remaining() == 300.0


def test_max_time_budget_is_checkpointed_and_counts_on_after_resume(tmp_path, clock):
    trainer = quiet_trainer(tmp_path, max_epochs=5, max_time={"seconds": 25}, callbacks=[Tick(clock)])
    trainer.fit(Linear(), loader(), loader())
    assert (trainer.global_step, trainer.current_epoch) == (3, 1)  # 30 s >= 25 s after the third batch
    trainer.save_checkpoint(tmp_path / "timed.ckpt")
    state = torch.load(tmp_path / "timed.ckpt", weights_only=False)["callbacks"]
    assert state["Timer"]["time_elapsed"]["train"] == 34.0
    resumed = quiet_trainer(tmp_path, max_epochs=10, max_time={"seconds": 65}, callbacks=[Tick(clock)])
    resumed.fit(Linear(), loader(), loader(), ckpt_path=tmp_path / "timed.ckpt")
    assert resumed.global_step == 7  # 34 s restored + 4 batches of 10 s >= 65 s


def test_a_timer_callback_takes_precedence_over_max_time(tmp_path, clock, caplog):
    timer = Timer(duration={"seconds": 15}, verbose=False)
    trainer = quiet_trainer(tmp_path, max_epochs=5, max_time={"seconds": 0}, callbacks=[Tick(clock), timer])
    assert "Ignoring `Trainer(max_time=...)`, callbacks list already contains a Timer." in caplog.text
    assert sum(isinstance(callback, Timer) for callback in trainer.callbacks) == 1
    trainer.fit(Linear(), loader(), loader())
    assert trainer.global_step == 2  # the callback's 15 s, not max_time's 0 s


def test_a_timer_callback_lifts_the_default_epoch_limit(tmp_path):
    trainer = quiet_trainer(tmp_path, callbacks=[Timer(duration={"seconds": 0})])
    trainer.fit(Linear(), loader())
    assert trainer.max_epochs == -1 and trainer.global_step == 0
