"""CheckpointIO: checkpoints are written atomically, and a CheckpointIO given in `Trainer(plugins=...)`
stores and loads every checkpoint of the run."""

import errno
import os
import subprocess
import sys
import textwrap

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


class _FullDiskFile:
    """A real file that accepts `capacity` bytes, then fails every write like a full disk."""

    def __init__(self, file, capacity):
        self._file, self._left = file, capacity

    def write(self, data):
        if len(data) > self._left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def test_disk_full_during_save_raises_the_os_error_naming_the_file(tmp_path, monkeypatch):
    trainer = _fitted_trainer(tmp_path)
    path = tmp_path / "ckpts" / "model.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: _FullDiskFile(real_fdopen(*args, **kwargs), 300))

    with pytest.raises(OSError) as raised:
        trainer.save_checkpoint(path)
    monkeypatch.undo()

    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(path)
    assert "No space left on device" in str(raised.value) and "model.ckpt" in str(raised.value)
    assert os.listdir(path.parent) == ["model.ckpt"]
    assert path.read_bytes() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE / SIGXFSZ semantics are Linux's")
def test_file_size_limit_during_save_raises_efbig_naming_the_file(tmp_path):
    # A real failing write: the OS refuses to grow the file past RLIMIT_FSIZE (EFBIG once SIGXFSZ is ignored).
    script = textwrap.dedent(f"""
        import os, resource, signal
        import torch
        import fulmen as L

        path = {str(tmp_path / "model.ckpt")!r}
        trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, default_root_dir={str(tmp_path)!r})
        io = trainer.strategy.checkpoint_io
        io.save_checkpoint({{"state_dict": {{"w": torch.zeros(10)}}}}, path)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
        try:  # 400 kB of weights cannot fit under the 64 kB limit
            io.save_checkpoint({{"state_dict": torch.nn.Linear(1000, 100).state_dict()}}, path)
        except OSError as error:
            print("ERRNO", error.errno, "FILENAME", error.filename)
            print("MESSAGE", error)
        print("FILES", sorted(os.listdir({str(tmp_path)!r})))
        print("KEPT", list(torch.load(path)["state_dict"]))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ERRNO {errno.EFBIG} FILENAME {tmp_path / 'model.ckpt'}" in result.stdout
    assert "enforce fail" not in result.stdout
    assert "FILES ['model.ckpt']" in result.stdout
    assert "KEPT ['w']" in result.stdout


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


def test_storage_options_need_a_checkpoint_io_that_uses_them(tmp_path):
    trainer = _fitted_trainer(tmp_path)
    with pytest.raises(TypeError, match="with `storage_options` arg is not supported for `TorchCheckpointIO`. Please "
                                        "implement your custom `CheckpointIO`"):
        trainer.save_checkpoint(tmp_path / "x.ckpt", storage_options={"tier": "cold"})
    assert not (tmp_path / "x.ckpt").exists()

    class TieredIO(RecordingIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            self.calls.append(("save", os.path.basename(path), storage_options))

    io = TieredIO()
    trainer = quiet_trainer(tmp_path, max_epochs=1, plugins=[io])
    trainer.fit(TinyModule(), make_loader(16))
    trainer.save_checkpoint(tmp_path / "y.ckpt", storage_options={"tier": "cold"})
    assert io.calls[-1] == ("save", "y.ckpt", {"tier": "cold"})


@pytest.mark.parametrize("url", ["memory://root/a.ckpt", "s3://bucket/a.ckpt"])
def test_a_remote_url_is_refused_with_the_fix_and_file_urls_are_local(tmp_path, url):
    # Lightning reaches remote storage through fsspec, which fulmen does not depend on.
    refused = "fulmen reads and writes the local filesystem only .*Use a local path"
    trainer = _fitted_trainer(tmp_path)
    with pytest.raises(NotImplementedError, match=f"Cannot save a checkpoint to '{url}': {refused}"):
        trainer.save_checkpoint(url)
    with pytest.raises(NotImplementedError, match=f"Cannot write checkpoints to '{url}': {refused}"):
        ModelCheckpoint(dirpath=url)
    with pytest.raises(NotImplementedError, match=f"Cannot write logs and checkpoints under '{url}': {refused}"):
        quiet_trainer(url)
    with pytest.raises(NotImplementedError, match=f"Cannot load a checkpoint from '{url}'"):
        quiet_trainer(tmp_path, max_epochs=2).fit(TinyModule(), make_loader(16), ckpt_path=url)
    trainer.save_checkpoint(f"file://{tmp_path}/local.ckpt")
    assert (tmp_path / "local.ckpt").is_file()
