"""One Trainer, several runs: each fit/validate/test/predict starts from fresh per-run state.

Only what Lightning documents as lasting (the Trainer's own callbacks and loggers, `current_epoch`,
`global_step`, the last fit's checkpoint paths and sanity-check counts) carries from one call to the next.
"""

from collections import Counter

import pytest
import torch

import fulmen as L
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class CountingCallback(L.Callback):
    def __init__(self):
        self.calls = Counter()

    def on_fit_start(self, trainer, pl_module):
        self.calls["on_fit_start"] += 1

    def teardown(self, trainer, pl_module, stage):
        self.calls["teardown"] += 1


class ModuleWithCallback(TinyModule):
    """A module that brings its own callback through `configure_callbacks()`."""

    def __init__(self):
        super().__init__(log_val=True)
        self.own = CountingCallback()

    def configure_callbacks(self):
        return [self.own]


class LogInSetup(L.Callback):
    """Logs from `setup`, where Lightning forbids it: the error names the hook the run thinks is running."""

    def __init__(self):
        self.errors = []

    def setup(self, trainer, pl_module, stage):
        with pytest.raises(Exception) as error:
            pl_module.log("x", 1.0)
        self.errors.append(str(error.value))


class TrainerCounting(CountingCallback):
    """The Trainer's own callback (another type, so the module's callback does not replace it)."""


def test_module_callbacks_belong_to_their_run(tmp_path):
    trainer_callback = TrainerCounting()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[trainer_callback], num_sanity_val_steps=0)
    first = ModuleWithCallback()
    trainer.fit(first, make_loader(16), make_loader(16))
    assert first.own in trainer.callbacks  # during and after its run, the run's callbacks include it
    assert first.own.calls == Counter(on_fit_start=1, teardown=1)

    second = TinyModule()
    trainer.fit(second, make_loader(16), make_loader(16))
    # The first module's callback is not part of the second run: it is never called again.
    assert first.own.calls == Counter(on_fit_start=1, teardown=1)
    assert first.own not in trainer.callbacks
    assert trainer_callback.calls == Counter(on_fit_start=2, teardown=2)


def test_fit_validate_fit_sees_fresh_counts_and_loaders(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, limit_train_batches=3)
    module = TinyModule(log_val=True)
    train, val = make_loader(64), make_loader(40)
    trainer.fit(module, train, val)
    assert (trainer.num_training_batches, trainer.num_val_batches) == (3, [5])
    assert trainer.train_dataloader is train and trainer.val_dataloaders is val

    other_val = make_loader(16)
    trainer.validate(module, other_val, verbose=False)
    assert trainer.num_val_batches == [2]
    assert trainer.val_dataloaders is other_val
    assert trainer.train_dataloader is None  # validate uses no training data
    assert trainer.fit_loop is None and trainer.ckpt_path is None

    new_train = make_loader(32)
    with pytest.warns(UserWarning, match="have no `val_dataloader`. Skipping val loop"):
        trainer.fit(module, new_train)  # max_epochs already reached: nothing trains, but it is a new run
    assert trainer.num_training_batches == 3 and trainer.train_dataloader is new_train
    assert trainer.val_dataloaders is None and trainer.num_val_batches == []


def test_second_fit_on_the_same_trainer_starts_with_fresh_batch_state(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0)
    module = TinyModule()
    trainer.fit(module, make_loader(64))
    assert trainer.num_training_batches == 8 and trainer.is_last_batch  # the first run ended on its last batch
    second = make_loader(16)
    trainer.fit(module, second)  # max_epochs already reached: the run trains nothing, but it is a new run
    assert trainer.train_dataloader is second and trainer.num_training_batches == 2
    assert trainer.is_last_batch is False


def test_a_failed_fit_leaves_nothing_for_the_next_one(tmp_path):
    class Failing(TinyModule):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    probe = LogInSetup()
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, callbacks=[probe])
    failing = Failing()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(failing, make_loader(64))
    assert trainer.interrupted

    module = ModuleWithCallback()
    trainer.fit(module, make_loader(16), make_loader(16))
    assert trainer.state.finished
    assert trainer.lightning_module is module and failing.calls["training_step"] == 1
    assert module.calls["training_step"] == 2 and module.own.calls["on_fit_start"] == 1
    assert trainer.num_training_batches == 2 and trainer.num_val_batches == [2]
    # The failed run was cut inside `training_step`; the next run's `self.log` checks against its own hook.
    assert len(probe.errors) == 2 and all("inside `setup`" in error for error in probe.errors)
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
