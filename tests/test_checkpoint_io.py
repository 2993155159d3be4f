"""CheckpointIO: checkpoints are written atomically, and a CheckpointIO given in `Trainer(plugins=...)`
stores and loads every checkpoint of the run."""

import os

import pytest
import torch

from fulmen.callbacks import ModelCheckpoint
from fulmen.checkpoint_io import CheckpointIO
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def _fitted_trainer(tmp_path, **flags):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, **flags)
    trainer.fit(TinyModule(), make_loader(32))
    return trainer


def _failing_save(monkeypatch, error):
    """Make torch.save write a few bytes, then fail like a full disk or a killed process."""

    def save(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk_full", "interrupted"])
def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch, error):
    trainer = _fitted_trainer(tmp_path)
    directory = tmp_path / "ckpts"
    path = directory / "model.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    trainer.lightning_module.layer.weight.data.add_(1.0)

    _failing_save(monkeypatch, error)
    with pytest.raises(type(error)):
        trainer.save_checkpoint(path)
    monkeypatch.undo()

    assert os.listdir(directory) == ["model.ckpt"]
    assert path.read_bytes() == before
    restored = TinyModule.load_from_checkpoint(path)
    assert not torch.equal(restored.layer.weight, trainer.lightning_module.layer.weight)


def test_failed_first_save_leaves_no_file(tmp_path, monkeypatch):
    trainer = _fitted_trainer(tmp_path)
    _failing_save(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint(tmp_path / "out" / "model.ckpt")
    assert os.listdir(tmp_path / "out") == []


def test_save_checkpoint_creates_missing_directories(tmp_path):
    trainer = _fitted_trainer(tmp_path)
    path = tmp_path / "a" / "b" / "model.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["global_step"] == 4


class RecordingIO(CheckpointIO):
    """Stores checkpoints in memory instead of on disk, recording every call."""

    def __init__(self):
        self.files = {}
        self.calls = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.calls.append(("save", os.path.basename(path)))
        self.files[os.fspath(path)] = checkpoint

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        self.calls.append(("load", os.path.basename(path)))
        return self.files[os.fspath(path)]

    def remove_checkpoint(self, path):
        self.calls.append(("remove", os.path.basename(path)))
        del self.files[os.fspath(path)]


def test_checkpoint_io_plugin_saves_removes_and_loads_every_checkpoint(tmp_path):
    io = RecordingIO()
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=3)
    trainer = quiet_trainer(tmp_path, max_epochs=1, plugins=[io], callbacks=[callback], enable_checkpointing=True,
                           limit_val_batches=0)
    trainer.fit(TinyModule(), make_loader(64))  # 8 steps: saves at 3 and 6, keeping only the latest

    assert io.calls == [("save", "epoch=0-step=3.ckpt"), ("save", "epoch=0-step=6.ckpt"),
                        ("remove", "epoch=0-step=3.ckpt")]
    assert not (tmp_path / "ckpts").exists() or os.listdir(tmp_path / "ckpts") == []
    trainer.save_checkpoint(tmp_path / "manual.ckpt")
    assert io.calls[-1] == ("save", "manual.ckpt")

    resumed, model = quiet_trainer(tmp_path, max_epochs=2, plugins=[io], limit_val_batches=0), TinyModule()
    resumed.fit(model, make_loader(64), ckpt_path=callback.best_model_path)
    assert io.calls[-1] == ("load", "epoch=0-step=6.ckpt")
    assert model.calls["training_step"] == 16 - 6  # resumed at step 6 of 2 epochs of 8 steps
