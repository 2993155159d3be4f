"""Checkpoint base class and OnExceptionCheckpoint: the file a failing run leaves, and the fit that resumes from it.
Behaviour checked against Lightning 2.6.6 (same module, same failures, same step counts)."""

import os

import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback, Checkpoint, ModelCheckpoint, OnExceptionCheckpoint
from fulmen.callbacks.checkpoint import Checkpoint as FromCheckpointModule
from fulmen.callbacks.on_exception_checkpoint import OnExceptionCheckpoint as FromModule
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class FailAt(TinyModule):
    def __init__(self, fail_at=None):
        super().__init__()
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def fit(tmp_path, callback, fail_at=None, **flags):
    trainer = quiet_trainer(tmp_path / "root", max_epochs=1, callbacks=[callback], enable_checkpointing=True, **flags)
    trainer.fit(FailAt(fail_at), make_loader(32))  # 4 batches
    return trainer


def test_a_failing_fit_leaves_the_checkpoint_and_no_default_model_checkpoint(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path / "ft")
    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, callback, fail_at=2)
    assert callback.ckpt_path == os.path.join(tmp_path / "ft", "on_exception.ckpt")
    assert os.listdir(tmp_path / "ft") == ["on_exception.ckpt"]
    assert not os.path.exists(tmp_path / "root" / "checkpoints")  # no ModelCheckpoint was added
    checkpoint = torch.load(callback.ckpt_path, weights_only=True)
    assert (checkpoint["global_step"], checkpoint["epoch"]) == (2, 0)


def test_the_next_fit_resumes_from_it_and_a_clean_end_deletes_it(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path / "ft")
    no_last = r'ckpt_path="last"\) is set, but there is no last checkpoint available'
    with pytest.warns(UserWarning, match=no_last), pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, callback, fail_at=2)
    with pytest.warns(UserWarning, match="The last model of the previous `fit` call will be used \\(an `OnExceptionCheckpoint`"):
        trainer = fit(tmp_path, callback)
    assert (trainer.global_step, trainer.current_epoch) == (4, 1)  # steps 2 and 3 after the restored 2
    assert trainer.ckpt_path == callback.ckpt_path
    assert os.listdir(tmp_path / "ft") == []


def test_custom_filename_and_a_clean_validate_deletes_it(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path / "ft", filename="crash")
    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, callback, fail_at=1)
    assert os.listdir(tmp_path / "ft") == ["crash.ckpt"]
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback])
    trainer.validate(TinyModule(), make_loader(16))  # only fit resumes by itself; a clean run still deletes
    assert trainer.ckpt_path is None and os.listdir(tmp_path / "ft") == []


def test_empty_filename_and_disabled_checkpointing_are_refused(tmp_path):
    with pytest.raises(ValueError, match="filename=.*cannot be empty"):
        OnExceptionCheckpoint(tmp_path, filename="")
    with pytest.raises(MisconfigurationException, match="enable_checkpointing=False"):
        L.Trainer(callbacks=[OnExceptionCheckpoint(tmp_path)], enable_checkpointing=False)


def test_checkpoint_subclasses_are_the_trainers_checkpoint_callbacks_and_run_last(tmp_path):
    order = []

    class MyCheckpoint(Checkpoint):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("checkpoint")

    class Other(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("other")

    mine = MyCheckpoint()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[mine, Other()], enable_checkpointing=True)
    trainer.fit(TinyModule(), make_loader(16))
    assert trainer.checkpoint_callbacks == [mine] and trainer.checkpoint_callback is mine
    assert order == ["other", "checkpoint"]
    assert issubclass(ModelCheckpoint, Checkpoint) and issubclass(OnExceptionCheckpoint, Checkpoint)
    assert Checkpoint is FromCheckpointModule and OnExceptionCheckpoint is FromModule
    assert OnExceptionCheckpoint.FILE_EXTENSION == ".ckpt"
