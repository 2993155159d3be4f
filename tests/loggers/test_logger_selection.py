"""`Trainer(logger=...)`: the default logger, no logger, several loggers, and `trainer.log_dir`.

Checked against Lightning 2.6: TensorBoardLogger by default when tensorboard is installed, else CSVLogger;
`logger=False` (or `[]`) leaves `trainer.logger` None and `trainer.log_dir` the default_root_dir.
"""

import importlib.util

import pytest

import fulmen as L
from fulmen.loggers import CSVLogger, TensorBoardLogger
from helpers.log_fixtures import LossLoggingModule, RecordingLogger, fit_with, log_trainer
from helpers.tiny import TinyModule, make_loader


def _default_trainer(root, **flags):
    options = dict(default_root_dir=root, accelerator="cpu", devices=1, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, max_epochs=1, limit_train_batches=2,
                   log_every_n_steps=1, limit_val_batches=0)
    options.update(flags)
    return L.Trainer(**options)


def _hide_tensorboard(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "tensorboard" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("logger", [None, True])
def test_default_logger_is_tensorboard(tmp_path, logger):
    pytest.importorskip("tensorboard")
    flags = {} if logger is None else {"logger": logger}
    trainer = _default_trainer(tmp_path, **flags)
    assert isinstance(trainer.logger, TensorBoardLogger)
    assert trainer.loggers == [trainer.logger]
    assert trainer.log_dir == str(tmp_path / "lightning_logs" / "version_0")


def test_default_logger_falls_back_to_csv_without_tensorboard(tmp_path, monkeypatch):
    _hide_tensorboard(monkeypatch)
    trainer = _default_trainer(tmp_path)
    assert type(trainer.logger) is CSVLogger
    trainer.fit(LossLoggingModule(), make_loader())
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert trainer.log_dir == str(run_dir)
    assert (run_dir / "metrics.csv").is_file()


def test_default_logger_writes_under_default_root_dir(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = _default_trainer(tmp_path)
    trainer.fit(LossLoggingModule(), make_loader())
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert sorted(path.name for path in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    assert (run_dir / "hparams.yaml").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))


def test_default_logger_creates_version_dir_even_when_nothing_is_logged(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = _default_trainer(tmp_path, limit_train_batches=1, log_every_n_steps=50)
    trainer.fit(TinyModule(), make_loader())
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").is_file()


def test_second_run_gets_next_version(tmp_path):
    pytest.importorskip("tensorboard")
    for _ in range(2):
        trainer = _default_trainer(tmp_path)
        trainer.fit(LossLoggingModule(), make_loader())
    assert trainer.log_dir == str(tmp_path / "lightning_logs" / "version_1")


@pytest.mark.parametrize("logger", [False, []])
def test_no_logger(tmp_path, logger):
    trainer = _default_trainer(tmp_path, logger=logger)
    assert trainer.logger is None
    assert trainer.loggers == []
    assert trainer.log_dir == str(tmp_path)
    trainer.fit(LossLoggingModule(), make_loader())
    assert not (tmp_path / "lightning_logs").exists()
    assert trainer.callback_metrics["train_loss"].ndim == 0  # metrics are still collected


def test_several_loggers_all_receive_metrics(tmp_path):
    first, second = RecordingLogger(), RecordingLogger()
    trainer = fit_with(tmp_path, [first, second], epochs=1, val_batches=1, every=1)
    assert trainer.logger is first
    assert trainer.loggers == [first, second]
    assert first.calls == second.calls
    assert first.steps("train_loss") == [0, 1, 2]
    assert first.steps("val_loss") == [2]
    assert first.hparams == second.hparams == [{"lr": 0.1, "hidden": 4}]


def test_csv_and_tensorboard_together(tmp_path):
    pytest.importorskip("tensorboard")
    csv_logger, tb_logger = CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb")
    trainer = fit_with(tmp_path, [csv_logger, tb_logger], epochs=1, every=1)
    assert trainer.log_dir == csv_logger.log_dir == str(tmp_path / "csv" / "version_0")
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()
    assert list((tmp_path / "tb" / "version_0").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("logger, message", [(3, "int"), ([RecordingLogger(), "csv"], "str")])
def test_invalid_logger_raises_type_error(tmp_path, logger, message):
    # Lightning accepts these and fails later; fulmen rejects them when the Trainer is built.
    with pytest.raises(TypeError, match=rf"`logger`.*{message}"):
        log_trainer(tmp_path, logger=logger)
