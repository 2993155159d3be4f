"""`ModelCheckpoint(train_time_interval=...)` saves by elapsed time, tested on a fake clock (no wall-clock dependence)."""

import itertools
import types
from datetime import timedelta

import fulmen.callbacks.model_checkpoint as model_checkpoint_module
from fulmen.callbacks import ModelCheckpoint
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def test_train_time_interval_saves_when_the_interval_has_passed(tmp_path, monkeypatch):
    # Every reading of the clock is one second later than the previous one: train start at 0 s,
    # then the end of batch 0 at 1 s, batch 1 at 2 s, ...; a 1.5 s interval saves after batches 1 and 3.
    seconds = itertools.count()
    monkeypatch.setattr(model_checkpoint_module, "time", types.SimpleNamespace(monotonic=lambda: float(next(seconds))))
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, train_time_interval=timedelta(seconds=1.5))
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, enable_checkpointing=True,
                            callbacks=[callback])
    trainer.fit(TinyModule(), make_loader(32))  # 4 batches
    assert sorted(path.name for path in (tmp_path / "ckpts").iterdir()) == ["epoch=0-step=2.ckpt",
                                                                            "epoch=0-step=4.ckpt"]
