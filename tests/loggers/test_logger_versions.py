"""Two runs started at once in one directory never share a `version_N` (the directory is claimed atomically)."""

import os

import pytest

import fulmen.loggers.logger as logger_module
from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import CSVLogger, TensorBoardLogger
from helpers.tiny import TinyModule, make_loader, quiet_trainer


@pytest.mark.parametrize("make", [CSVLogger, TensorBoardLogger], ids=["csv", "tensorboard"])
def test_loggers_resolving_their_version_before_either_writes_get_different_versions(tmp_path, make):
    if make is TensorBoardLogger:
        pytest.importorskip("tensorboard")
    first, second = make(tmp_path), make(tmp_path)
    assert (first.version, second.version) == (0, 1)
    assert first.log_dir != second.log_dir
    assert sorted(os.listdir(tmp_path / "lightning_logs")) == ["version_0", "version_1"]


def test_two_trainers_started_together_keep_separate_logs_and_checkpoints(tmp_path):
    trainers = [quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, logger=True, enable_checkpointing=True)
                for _ in range(2)]
    # Both runs pick their version before either has written anything, as two processes started at once do.
    versions = [trainer.logger.version for trainer in trainers]
    assert versions == [0, 1]
    for trainer in trainers:
        trainer.fit(TinyModule(), make_loader(32))
    for version in versions:
        run_dir = tmp_path / "lightning_logs" / f"version_{version}"
        assert sorted(os.listdir(run_dir)) != ["checkpoints"]  # this run's own log files
        assert [path.name for path in (run_dir / "checkpoints").iterdir()] == ["epoch=0-step=4.ckpt"]


def test_a_version_taken_between_scan_and_claim_is_skipped(tmp_path, monkeypatch):
    # Simulate the race: the scan saw versions up to 0, but another run created version_1 right after it.
    root = tmp_path / "lightning_logs"
    (root / "version_0").mkdir(parents=True)
    (root / "version_1").mkdir()
    monkeypatch.setattr(logger_module, "next_version", lambda root_dir: 1)
    logger = CSVLogger(tmp_path)
    assert logger.version == 2
    assert (root / "version_2").is_dir()


def test_explicit_version_is_used_as_given(tmp_path):
    (tmp_path / "lightning_logs" / "version_3").mkdir(parents=True)
    assert CSVLogger(tmp_path, version=3).version == 3
    assert CSVLogger(tmp_path).version == 4


def test_model_checkpoint_dirpath_follows_the_claimed_version(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, logger=CSVLogger(tmp_path),
                            callbacks=[ModelCheckpoint()])
    trainer.fit(TinyModule(), make_loader(32))
    assert os.listdir(tmp_path / "lightning_logs" / "version_0" / "checkpoints") == ["epoch=0-step=4.ckpt"]
