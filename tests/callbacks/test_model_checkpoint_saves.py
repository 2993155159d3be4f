"""ModelCheckpoint saves that depend on timing: step saves waiting for validation's value, the exception
checkpoint, subclass file extensions, and the bookkeeping when a write fails.

Expected names and scores were observed with Lightning 2.6.6 running the same schedules (see each test).
"""

import os

import pytest
import torch

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.checkpoint_io import CheckpointIO
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class StepScoredModule(TinyModule):
    """Logs `val_loss = global_step` in validation, so each saved score names the validation it came from."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", float(self.global_step))


class ScoreSpy(L.Callback):
    """Records (global_step, val_loss) each time a checkpoint is written."""

    def __init__(self):
        self.saves = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        score = trainer.callback_metrics.get("val_loss")
        self.saves.append((trainer.global_step, None if score is None else float(score)))


def _names(directory):
    return sorted(os.listdir(directory))


# -- step saves with a monitor logged in validation -------------------------------------------------------


def test_step_saves_wait_for_the_monitored_value_from_validation(tmp_path):
    # Lightning 2.6.6, 8 batches per epoch, every_n_train_steps=2, val_check_interval=4: the saves of steps 2
    # and 4 (no val_loss yet) wait for step 4's validation; the epoch's last step waits for its validation;
    # other steps use the latest value.
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=2, monitor="val_loss",
                                 save_top_k=-1, filename="{epoch}-{step}-{val_loss:.0f}")
    spy = ScoreSpy()
    trainer = quiet_trainer(tmp_path, callbacks=[checkpoint, spy], max_epochs=2, enable_checkpointing=True,
                            num_sanity_val_steps=0, val_check_interval=4)
    trainer.fit(StepScoredModule(), make_loader(64), make_loader(16))
    assert spy.saves == [(4, 4.0), (6, 4.0), (8, 8.0), (10, 8.0), (12, 8.0), (14, 12.0), (16, 16.0)]
    assert _names(tmp_path / "ckpts") == [
        "epoch=0-step=4-val_loss=4.ckpt", "epoch=0-step=6-val_loss=4.ckpt", "epoch=0-step=8-val_loss=8.ckpt",
        "epoch=1-step=10-val_loss=8.ckpt", "epoch=1-step=12-val_loss=8.ckpt", "epoch=1-step=14-val_loss=12.ckpt",
        "epoch=1-step=16-val_loss=16.ckpt"]
    assert checkpoint.best_k_models[checkpoint.best_model_path] == 4.0


def test_step_saves_at_epoch_end_validation_use_its_value(tmp_path):
    # Validation once per epoch (val_check_interval=1.0): the first epoch's saves wait for its validation
    # and each epoch's last step saves with that step's value. (Lightning 2.6.6 drops the first epoch's
    # saves here and saves step 16 with epoch 0's value; fulmen never saves without, or with a stale, score.)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=2, monitor="val_loss",
                                 save_top_k=-1)
    spy = ScoreSpy()
    trainer = quiet_trainer(tmp_path, callbacks=[checkpoint, spy], max_epochs=2, enable_checkpointing=True,
                            num_sanity_val_steps=0)
    trainer.fit(StepScoredModule(), make_loader(64), make_loader(16))
    assert spy.saves == [(8, 8.0), (10, 8.0), (12, 8.0), (14, 8.0), (16, 16.0)]
    assert checkpoint.best_model_score == 8.0


def test_step_saves_without_validation_warn_about_the_missing_monitor(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=2, monitor="val_loss")
    trainer = quiet_trainer(tmp_path, callbacks=[checkpoint], max_epochs=1, enable_checkpointing=True,
                            limit_val_batches=0)
    with pytest.warns(UserWarning, match="could not find the monitored key in the returned metrics"):
        trainer.fit(StepScoredModule(), make_loader(32))
    assert not (tmp_path / "ckpts").exists()


# -- the exception checkpoint and FILE_EXTENSION ----------------------------------------------------------


class FailingModule(TinyModule):
    def training_step(self, batch, batch_idx):
        if self.global_step == 5:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


class PtCheckpoint(ModelCheckpoint):
    FILE_EXTENSION = ".pt"


def test_exception_checkpoint_is_named_like_other_saves_and_honours_file_extension(tmp_path):
    # Lightning 2.6.6 with the same subclass, 4 batches per epoch, failing at step 5:
    # ['epoch=0-step=4.pt', 'epoch=1-step=5.pt', 'last.pt'], best epoch=0-step=4.pt, last last.pt.
    checkpoint = PtCheckpoint(dirpath=tmp_path / "ckpts", save_on_exception=True, save_last=True)
    trainer = quiet_trainer(tmp_path, callbacks=[checkpoint], max_epochs=3, enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(FailingModule(), make_loader(32))
    assert _names(tmp_path / "ckpts") == ["epoch=0-step=4.pt", "epoch=1-step=5.pt", "last.pt"]
    assert checkpoint.best_model_path == str(tmp_path / "ckpts" / "epoch=0-step=4.pt")
    assert checkpoint.last_model_path == str(tmp_path / "ckpts" / "last.pt")
    assert torch.load(tmp_path / "ckpts" / "epoch=1-step=5.pt", weights_only=True)["global_step"] == 5


def test_file_extension_applies_to_versioned_and_last_names(tmp_path):
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "epoch=0-step=4.pt").write_bytes(b"")  # taken: the save gets -v1
    (tmp_path / "ckpts" / "last.pt").write_bytes(b"")
    checkpoint = PtCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    trainer = quiet_trainer(tmp_path, callbacks=[checkpoint], max_epochs=1, enable_checkpointing=True)
    trainer.fit(TinyModule(), make_loader(32))
    assert checkpoint.best_model_path == str(tmp_path / "ckpts" / "epoch=0-step=4-v1.pt")
    assert checkpoint.last_model_path == str(tmp_path / "ckpts" / "last-v1.pt")


# -- a failed write leaves no path naming a missing file -------------------------------------------------


class FailingIO(CheckpointIO):
    """Raises OSError (as a full disk does) on the `fail_at`-th save; the others are written."""

    def __init__(self, fail_at):
        super().__init__()
        self.fail_at = fail_at
        self.saves = 0

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.saves += 1
        if self.saves == self.fail_at:
            raise OSError(28, "No space left on device")
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)


class ImprovingModule(TinyModule):
    def validation_step(self, batch, batch_idx):
        self.log("val_loss", 1.0 / (1 + self.current_epoch))  # every epoch is a new best


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
@pytest.mark.parametrize("monitor", [None, "val_loss"])
def test_failed_write_leaves_best_and_last_paths_on_written_files(tmp_path, fail_at, monitor):
    # Each epoch writes its top-k file, then last.ckpt; the `fail_at`-th write fails.
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor=monitor, save_top_k=1, save_last=True)
    trainer = quiet_trainer(tmp_path, callbacks=[checkpoint], max_epochs=3, enable_checkpointing=True,
                            num_sanity_val_steps=0, plugins=[FailingIO(fail_at)])
    with pytest.raises(OSError, match="No space left"):
        trainer.fit(ImprovingModule(), make_loader(32), make_loader(16))
    for path in [checkpoint.best_model_path, checkpoint.last_model_path, *checkpoint.best_k_models]:
        assert not path or os.path.isfile(path), path
    if checkpoint.best_model_path:
        assert set(checkpoint.best_k_models) <= {checkpoint.best_model_path}
        assert checkpoint.kth_best_model_path in ("", checkpoint.best_model_path)
        if monitor:
            assert checkpoint.best_model_score == checkpoint.best_k_models[checkpoint.best_model_path]
        # "best" names a file that loads
        trainer.validate(ImprovingModule(), make_loader(16), ckpt_path="best", verbose=False)
    else:
        assert fail_at == 1 and not checkpoint.best_k_models and checkpoint.best_model_score is None
