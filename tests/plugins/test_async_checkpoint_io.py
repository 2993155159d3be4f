"""`AsyncCheckpointIO`: saves in a background thread (the caller does not wait), snapshots tensors at the call,
keeps each save atomic, and raises a failed save's error on the next call or at teardown."""

import threading

import pytest
import torch

from fulmen.callbacks import ModelCheckpoint
from fulmen.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class GatedIO(TorchCheckpointIO):
    """Blocks every save until `gate` is set; records which thread saved."""

    def __init__(self):
        self.gate = threading.Event()
        self.started = threading.Event()
        self.threads = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.started.set()
        self.threads.append(threading.current_thread().name)
        self.gate.wait()
        super().save_checkpoint(checkpoint, path, storage_options)


def test_save_returns_before_the_write_and_snapshots_the_tensors(tmp_path):
    inner = GatedIO()
    io = AsyncCheckpointIO(inner)
    weight = torch.zeros(3)
    path = tmp_path / "a.ckpt"
    io.save_checkpoint({"w": weight}, path)  # returns although the write is blocked
    inner.started.wait()
    weight.add_(1)  # training goes on changing the tensor
    assert not path.exists()
    inner.gate.set()
    io.teardown()  # waits for the queued save
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(3))
    assert inner.threads[0] != threading.main_thread().name


def test_a_failed_save_surfaces_on_the_next_save_and_keeps_the_old_file(tmp_path):
    class Failing(CheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            raise OSError(28, "No space left on device")

    io = AsyncCheckpointIO(Failing())
    io.save_checkpoint({"x": torch.ones(1)}, tmp_path / "x.ckpt")
    with pytest.raises(OSError, match="No space left"):
        io.wait()
    io.save_checkpoint({"x": torch.ones(1)}, tmp_path / "x.ckpt")
    with pytest.raises(OSError, match="No space left"):
        io.teardown()
    assert not (tmp_path / "x.ckpt").exists()


def test_trainer_with_async_io_writes_checkpoints_and_resumes(tmp_path):
    io = AsyncCheckpointIO()
    assert isinstance(io.checkpoint_io, TorchCheckpointIO)
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=1, monitor="step", mode="max",
                               every_n_train_steps=1)
    trainer = quiet_trainer(tmp_path, plugins=[io], callbacks=[callback], max_steps=4)
    module = TinyModule()
    trainer.fit(module, make_loader(64))
    files = sorted(p.name for p in (tmp_path / "ckpts").iterdir())
    assert files == ["epoch=0-step=4.ckpt"]  # older ones removed after their queued saves finished
    checkpoint = torch.load(callback.best_model_path, weights_only=True)
    assert checkpoint["global_step"] == 4
    assert torch.equal(checkpoint["state_dict"]["layer.weight"], module.layer.weight.detach())
    resumed = quiet_trainer(tmp_path, plugins=[AsyncCheckpointIO()], max_steps=6)
    resumed.fit(TinyModule(), make_loader(64), ckpt_path=callback.best_model_path)
    assert resumed.global_step == 6


def test_async_io_rejects_a_non_checkpoint_io():
    with pytest.raises(TypeError, match="CheckpointIO instance"):
        AsyncCheckpointIO("disk")


def test_torch_checkpoint_io_loads_to_cpu_by_default(tmp_path):
    io = TorchCheckpointIO()
    io.save_checkpoint({"state_dict": {"t": torch.ones(2)}}, tmp_path / "t.ckpt")
    assert io.load_checkpoint(tmp_path / "t.ckpt")["state_dict"]["t"].device.type == "cpu"
    assert io.load_checkpoint(tmp_path / "t.ckpt", map_location="cpu")["state_dict"]["t"].device.type == "cpu"
