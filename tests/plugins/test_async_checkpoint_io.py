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


def _fit_with_checkpoints(root, plugins):
    torch.manual_seed(0)
    module = TinyModule()
    callback = ModelCheckpoint(dirpath=root / "ckpts", every_n_train_steps=2, save_top_k=-1, save_last=True)
    quiet_trainer(root, plugins=plugins, callbacks=[callback], max_steps=6).fit(module, make_loader(64))
    return {path.name: torch.load(path, weights_only=True) for path in sorted((root / "ckpts").iterdir())}


def test_checkpoints_every_n_steps_are_the_same_files_as_with_synchronous_io(tmp_path):
    synchronous = _fit_with_checkpoints(tmp_path / "sync", None)
    asynchronous = _fit_with_checkpoints(tmp_path / "async", [AsyncCheckpointIO()])
    assert list(asynchronous) == list(synchronous) == [
        "epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "epoch=0-step=6.ckpt", "last.ckpt"]
    for name, checkpoint in synchronous.items():
        _assert_same(asynchronous[name], checkpoint, name)


def _assert_same(value, expected, where):
    assert type(value) is type(expected), where
    if isinstance(expected, dict):
        assert list(value) == list(expected), where
        for key in expected:
            _assert_same(value[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(value) == len(expected), where
        for index, (item, other) in enumerate(zip(value, expected)):
            _assert_same(item, other, f"{where}[{index}]")
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(value, expected), where
    elif isinstance(expected, str):  # the two runs write under `sync/` and `async/`
        assert value.replace("/async/", "/sync/") == expected, where
    else:
        assert value == expected, where


class FailsAtStep(TinyModule):
    """Puts something `torch.save` cannot pickle into the checkpoint taken at `step`: that write fails half-way."""

    def __init__(self, step):
        super().__init__()
        self.failing_step = step

    def on_save_checkpoint(self, checkpoint):
        if checkpoint["global_step"] == self.failing_step:
            checkpoint["unpicklable"] = lambda: None


def test_a_background_save_failing_mid_write_fails_fit_and_keeps_the_previous_file(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="model", every_n_train_steps=1, save_top_k=1,
                               enable_version_counter=False)
    trainer = quiet_trainer(tmp_path, plugins=[AsyncCheckpointIO()], callbacks=[callback], max_steps=4)
    # The last save fails in the background: the end of the run waits for it and raises its error.
    with pytest.raises(Exception, match="lambda|pickle"):
        trainer.fit(FailsAtStep(4), make_loader(64))
    assert sorted(p.name for p in (tmp_path / "ckpts").iterdir()) == ["model.ckpt"]  # no temporary file left
    assert torch.load(tmp_path / "ckpts" / "model.ckpt", weights_only=True)["global_step"] == 3


def test_removing_the_previous_file_is_queued_behind_the_saves_instead_of_waiting(tmp_path):
    inner = GatedIO()
    io = AsyncCheckpointIO(inner)
    old, new = tmp_path / "old.ckpt", tmp_path / "new.ckpt"
    TorchCheckpointIO().save_checkpoint({"w": torch.zeros(1)}, old)
    io.save_checkpoint({"w": torch.ones(1)}, new)
    io.save_checkpoint({"w": torch.ones(1)}, old)  # queued: the removal below must come after it
    # What ModelCheckpoint does when a new top-k file replaces the old one: it must not wait for the disk.
    remover = threading.Thread(target=io.remove_checkpoint, args=(old,))
    remover.start()
    remover.join(timeout=60)
    returned = not remover.is_alive()
    inner.gate.set()
    io.teardown()
    assert returned
    assert not old.exists() and new.exists()  # in order: both saves, then the removal
