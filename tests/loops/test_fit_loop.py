"""How long `fit` runs and when it validates: epoch/step/time limits, stopping, val cadence, reloading."""

import pytest
import torch

import fulmen as L
from helpers.tiny import RecordingCallback, TinyModule, make_loader, quiet_trainer


def _fit(tmp_path, module=None, n_train=32, n_val=None, callbacks=(), **flags):
    """Fit on `n_train` samples (batch 8), validating on `n_val` samples when given."""
    module = module or TinyModule()
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = quiet_trainer(tmp_path, callbacks=list(callbacks), **flags)
    val = make_loader(n_val, seed=99) if n_val else None
    trainer.fit(module, make_loader(n_train), val)
    return trainer, module


class StopAt(L.Callback):
    """Sets `trainer.should_stop` at the end of the given (epoch, batch_idx), or at an epoch end."""

    def __init__(self, epoch, batch_idx=None):
        self.epoch, self.batch_idx = epoch, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.batch_idx == batch_idx and trainer.current_epoch == self.epoch:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module):
        if self.batch_idx is None and trainer.current_epoch == self.epoch:
            trainer.should_stop = True


# -- epoch and step limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("max_epochs", [1, 3])
def test_max_epochs_runs_every_batch_of_every_epoch(tmp_path, max_epochs):
    recorder = RecordingCallback()
    trainer, module = _fit(tmp_path, max_epochs=max_epochs, callbacks=[recorder])
    assert module.calls["training_step"] == 4 * max_epochs
    assert trainer.global_step == 4 * max_epochs
    assert trainer.current_epoch == max_epochs
    assert recorder.count("on_train_epoch_start") == max_epochs


def test_max_epochs_zero_trains_nothing(tmp_path):
    trainer, module = _fit(tmp_path, max_epochs=0)
    assert module.calls["training_step"] == 0
    assert trainer.global_step == 0
    assert trainer.current_epoch == 0


def test_max_steps_stops_mid_epoch_without_validation(tmp_path):
    recorder = RecordingCallback()
    trainer, module = _fit(tmp_path, n_val=16, max_epochs=5, max_steps=3, callbacks=[recorder])
    assert trainer.global_step == 3
    assert module.calls["training_step"] == 3
    # the stopped epoch counts as finished: 3 steps into epoch 0 -> current_epoch 1
    assert trainer.current_epoch == 1
    assert module.calls["validation_step"] == 0
    assert recorder.count("on_train_epoch_end") == 1


def test_max_steps_across_epochs(tmp_path):
    trainer, module = _fit(tmp_path, max_steps=6)
    assert trainer.global_step == 6
    assert module.calls["training_step"] == 6
    assert trainer.current_epoch == 2


def test_max_steps_wins_over_max_epochs(tmp_path):
    trainer, _ = _fit(tmp_path, max_epochs=1, max_steps=100)
    assert trainer.global_step == 4
    assert trainer.current_epoch == 1


def test_accumulate_grad_batches_counts_optimizer_steps(tmp_path):
    # 5 batches, windows of 2: steps at batch_idx 1, 3 and the incomplete last window at 4
    trainer, module = _fit(tmp_path, n_train=40, max_epochs=1, accumulate_grad_batches=2)
    assert module.calls["training_step"] == 5
    assert trainer.global_step == 3


def test_global_step_advances_when_training_step_returns_none(tmp_path):
    class SkipAll(TinyModule):
        def training_step(self, batch, batch_idx):
            self.calls["training_step"] += 1
            return None

    trainer, module = _fit(tmp_path, module=SkipAll(), max_epochs=1)
    assert module.calls["training_step"] == 4
    assert trainer.global_step == 4


# -- stopping early -------------------------------------------------------------------------------------


def test_should_stop_from_callback_at_epoch_end(tmp_path):
    trainer, module = _fit(tmp_path, max_epochs=5, callbacks=[StopAt(epoch=1)])
    assert trainer.current_epoch == 2
    assert trainer.global_step == 8
    assert trainer.state.status == "finished"


def test_should_stop_from_callback_mid_epoch_stops_after_that_batch(tmp_path):
    recorder = RecordingCallback()
    trainer, module = _fit(tmp_path, max_epochs=5, callbacks=[StopAt(epoch=0, batch_idx=1), recorder])
    assert module.calls["training_step"] == 2
    assert trainer.global_step == 2
    assert trainer.current_epoch == 1
    assert recorder.count("on_train_epoch_end") == 1


def test_should_stop_from_module_training_step(tmp_path):
    class StopsItself(TinyModule):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    trainer, module = _fit(tmp_path, module=StopsItself(), max_epochs=5)
    assert module.calls["training_step"] == 3
    assert trainer.global_step == 3
    assert trainer.state.status == "finished"


def test_min_epochs_keeps_training_after_should_stop(tmp_path, caplog):
    trainer, module = _fit(tmp_path, max_epochs=10, min_epochs=3, callbacks=[StopAt(epoch=0)])
    assert trainer.current_epoch == 3
    assert trainer.global_step == 12
    said = "Trainer was signaled to stop but the required `min_epochs=3` or `min_steps=None` has not been met. " \
           "Training will continue..."
    assert caplog.text.count(said) == 1  # Lightning's line, once


def test_min_epochs_with_mid_epoch_stop_finishes_whole_epochs(tmp_path):
    trainer, module = _fit(tmp_path, max_epochs=10, min_epochs=2, callbacks=[StopAt(epoch=0, batch_idx=0)])
    assert trainer.current_epoch == 2
    assert module.calls["training_step"] == 8


def test_min_steps_keeps_training_after_should_stop(tmp_path):
    trainer, module = _fit(tmp_path, max_epochs=10, min_steps=6, callbacks=[StopAt(epoch=0, batch_idx=0)])
    # stops right after the 6th step, in the middle of epoch 1
    assert trainer.global_step == 6
    assert trainer.current_epoch == 2


def test_min_steps_alone_also_finishes_the_first_epoch(tmp_path):
    # Lightning sets min_epochs=1 when only min_steps is given: min_steps=2 is met mid-epoch 0,
    # but the stop waits for epoch 0 to end
    trainer, module = _fit(tmp_path, max_epochs=10, min_steps=2, callbacks=[StopAt(epoch=0, batch_idx=0)])
    assert trainer.global_step == 4
    assert trainer.current_epoch == 1


def test_max_time_zero_stops_early(tmp_path):
    trainer, module = _fit(tmp_path, max_epochs=5, max_time={"seconds": 0})
    assert module.calls["training_step"] < 4 * 5
    assert trainer.current_epoch < 5
    assert trainer.state.status == "finished"


def test_max_time_already_spent_at_fit_start_trains_no_batch(tmp_path):
    trainer, module = _fit(tmp_path, max_epochs=5, max_time={"seconds": 0})
    assert module.calls["training_step"] == 0
    assert trainer.global_step == 0
    assert trainer.current_epoch == 0


def test_max_time_string_and_timedelta_are_accepted(tmp_path):
    from datetime import timedelta

    for value in ("00:00:00:00", timedelta(0)):
        trainer, module = _fit(tmp_path, max_epochs=3, max_time=value)
        assert module.calls["training_step"] < 12


# -- limit_train_batches ------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (0.5, 4), (1.0, 8), (100, 8)])
def test_limit_train_batches_counts_training_steps(tmp_path, limit, expected):
    trainer, module = _fit(tmp_path, n_train=64, max_epochs=2, limit_train_batches=limit)
    assert trainer.num_training_batches == expected
    assert module.calls["training_step"] == 2 * expected


def test_limit_train_batches_zero_skips_training(tmp_path):
    class Counting(TinyModule):
        requests = 0

        def train_dataloader(self):
            Counting.requests += 1
            return make_loader(32)

    module = Counting()
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_train_batches=0)
    trainer.fit(module)
    assert module.calls["training_step"] == 0 and trainer.global_step == 0
    # As Lightning: the training data is not even requested.
    assert Counting.requests == 0 and trainer.train_dataloader is None and trainer.num_training_batches == float("inf")


# -- when validation runs -------------------------------------------------------------------------------


def _val_steps(recorder):
    return [step for name, _, step in recorder.events if name == "on_validation_start"]


def _val_epochs(recorder):
    return [epoch for name, epoch, _ in recorder.events if name == "on_validation_start"]


def test_validation_runs_at_every_epoch_end_by_default(tmp_path):
    recorder = RecordingCallback()
    _, module = _fit(tmp_path, n_val=16, max_epochs=3, callbacks=[recorder])
    assert _val_steps(recorder) == [4, 8, 12]
    assert module.calls["validation_step"] == 3 * 2


def test_validation_runs_before_on_train_epoch_end(tmp_path):
    recorder = RecordingCallback()
    _fit(tmp_path, n_val=16, max_epochs=1, callbacks=[recorder])
    names = recorder.names()
    assert names.index("on_validation_start") < names.index("on_train_epoch_end")


def test_val_check_interval_int_counts_batches_within_each_epoch(tmp_path):
    # 6 batches, every 4: once per epoch after the 4th batch; no extra run at the epoch end
    recorder = RecordingCallback()
    _fit(tmp_path, n_train=48, n_val=16, max_epochs=2, val_check_interval=4, callbacks=[recorder])
    assert _val_steps(recorder) == [4, 10]


def test_val_check_interval_float_is_a_fraction_of_the_epoch(tmp_path):
    recorder = RecordingCallback()
    _fit(tmp_path, n_train=32, n_val=16, max_epochs=2, val_check_interval=0.5, callbacks=[recorder])
    assert _val_steps(recorder) == [2, 4, 6, 8]


def test_check_val_every_n_epoch_skips_epochs(tmp_path):
    recorder = RecordingCallback()
    _, module = _fit(tmp_path, n_val=16, max_epochs=4, check_val_every_n_epoch=2, callbacks=[recorder])
    assert _val_epochs(recorder) == [1, 3]
    assert module.calls["validation_step"] == 2 * 2


def test_check_val_every_n_epoch_none_counts_interval_across_epochs(tmp_path):
    recorder = RecordingCallback()
    _fit(tmp_path, n_train=32, n_val=16, max_epochs=3, val_check_interval=5, check_val_every_n_epoch=None,
         callbacks=[recorder])
    # 12 batches in all, validation after the 5th and the 10th
    assert _val_steps(recorder) == [5, 10]


def test_val_check_interval_beyond_the_epoch_raises_unless_validation_is_off(tmp_path):
    with pytest.raises(ValueError, match=r"`val_check_interval` \(5\) must be less than or equal to the number of the "
                                         r"training batches \(4\).*`limit_val_batches=0`"):
        _fit(tmp_path, n_train=32, n_val=16, max_epochs=1, val_check_interval=5)
    trainer, module = _fit(tmp_path, n_train=32, n_val=16, max_epochs=1, val_check_interval=5, limit_val_batches=0)
    assert trainer.global_step == 4 and module.calls["validation_step"] == 0  # as Lightning: no error


def test_no_validation_without_val_data(tmp_path):
    recorder = RecordingCallback()
    _, module = _fit(tmp_path, max_epochs=2, callbacks=[recorder])
    assert module.calls["validation_step"] == 0
    assert _val_steps(recorder) == []


def test_training_mode_and_grad_restored_after_validation(tmp_path):
    class Watch(TinyModule):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_batch_start(self, batch, batch_idx):
            self.seen.append((self.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled()))

    module = Watch()
    _fit(tmp_path, module=module, n_val=16, max_epochs=2, val_check_interval=2, num_sanity_val_steps=2)
    assert len(module.seen) == 8
    assert set(module.seen) == {(True, True, False)}
    assert module.training


def test_frozen_submodule_stays_in_eval_mode_after_validation(tmp_path):
    class WithFrozen(TinyModule):
        def __init__(self):
            super().__init__()
            self.frozen = torch.nn.Dropout(0.5)
            self.frozen.eval()
            self.modes = []

        def validation_step(self, batch, batch_idx):
            self.modes.append(("val", self.training, self.layer.training, self.frozen.training))
            return super().validation_step(batch, batch_idx)

        def on_train_batch_start(self, batch, batch_idx):
            self.modes.append(("train", self.training, self.layer.training, self.frozen.training))

    module = WithFrozen()
    _fit(tmp_path, module=module, n_val=8, max_epochs=2)
    assert set(m for m in module.modes if m[0] == "val") == {("val", False, False, False)}
    assert set(m for m in module.modes if m[0] == "train") == {("train", True, True, False)}
    assert module.frozen.training is False


# -- reloading dataloaders ------------------------------------------------------------------------------


class CountsLoaders(TinyModule):
    def __init__(self):
        super().__init__()
        self.requests = {"train": 0, "val": 0}

    def train_dataloader(self):
        self.requests["train"] += 1
        return make_loader(32)

    def val_dataloader(self):
        self.requests["val"] += 1
        return make_loader(16, seed=99)


@pytest.mark.parametrize(("every", "epochs", "expected"), [(0, 4, 1), (1, 4, 4), (2, 4, 2)])
def test_reload_dataloaders_every_n_epochs_requests_train_loader_again(tmp_path, every, epochs, expected):
    module = CountsLoaders()
    trainer = quiet_trainer(tmp_path, max_epochs=epochs, num_sanity_val_steps=0,
                            reload_dataloaders_every_n_epochs=every)
    trainer.fit(module)
    assert module.requests["train"] == expected
    assert module.calls["training_step"] == 4 * epochs


def test_dataloader_hooks_called_once_without_reload(tmp_path):
    module = CountsLoaders()
    quiet_trainer(tmp_path, max_epochs=3).fit(module)
    assert module.requests == {"train": 1, "val": 1}


def test_raising_fit_loop_max_epochs_then_fitting_again_trains_on(tmp_path):
    # Lightning's way to continue a finished fit: the loop's limits are the Trainer's and persist.
    trainer, module = _fit(tmp_path, max_epochs=1)
    assert (trainer.current_epoch, trainer.global_step) == (1, 4)
    trainer.fit_loop.max_epochs = 3
    assert trainer.max_epochs == 3
    trainer.fit(module, make_loader(32))
    assert (trainer.current_epoch, trainer.global_step) == (3, 12)
    trainer.fit_loop.max_steps = 14
    trainer.fit_loop.max_epochs = 10
    trainer.fit(module, make_loader(32))
    assert trainer.global_step == 14 and trainer.max_steps == 14
