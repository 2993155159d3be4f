"""Lightning's logger module paths (`loggers.logger`, `loggers.csv_logs`, `loggers.tensorboard`, `loggers.mlflow`)
and `DummyLogger`, used as a user would."""

import copy

import fulmen as L
from tests.helpers.tiny import TinyModule, make_loader


def _trainer(tmp_path, **flags):
    return L.Trainer(default_root_dir=tmp_path, max_steps=2, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **flags)


def test_dummy_logger_accepts_everything_and_records_nothing(tmp_path):
    from fulmen.loggers.logger import DummyExperiment, DummyLogger, Logger

    logger = DummyLogger()
    assert isinstance(logger, Logger) and isinstance(logger.experiment, DummyExperiment)
    assert logger.name == "" and logger.version == ""
    assert logger.save_dir is None and logger.log_dir is None
    assert logger.experiment.add_image("image", object(), global_step=3) is None
    assert logger[0] is logger
    assert logger.log_metrics({"a": 1.0}, step=0) is None and logger.log_hyperparams({"lr": 0.1}) is None
    assert logger.any_method_a_logger_might_have(1, key=2) is None
    assert isinstance(copy.deepcopy(logger), DummyLogger)

    trainer = _trainer(tmp_path, logger=logger)
    trainer.fit(TinyModule(log_val=True), make_loader(), make_loader(16))
    assert trainer.logger is logger and trainer.loggers == [logger]
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_logger_module_paths_are_the_loggers(tmp_path):
    from fulmen.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
    from fulmen.loggers.csv_logs import CSVLogger as csv_logs_CSVLogger
    from fulmen.loggers.csv_logs import ExperimentWriter
    from fulmen.loggers.logger import Logger as logger_Logger
    from fulmen.loggers.logger import rank_zero_experiment
    from fulmen.loggers.mlflow import MLFlowLogger as mlflow_MLFlowLogger
    from fulmen.loggers.tensorboard import TensorBoardLogger as tensorboard_TensorBoardLogger

    assert csv_logs_CSVLogger is CSVLogger and logger_Logger is Logger and callable(rank_zero_experiment)
    assert mlflow_MLFlowLogger is MLFlowLogger and tensorboard_TensorBoardLogger is TensorBoardLogger

    logger = csv_logs_CSVLogger(tmp_path, name="run")
    trainer = _trainer(tmp_path, logger=logger)
    trainer.validate(TinyModule(log_val=True), make_loader(16))
    assert trainer.log_dir == str(tmp_path / "run" / "version_0")
    assert "val_loss" in (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()[0]

    writer = ExperimentWriter(str(tmp_path / "writer"))
    writer.log_metrics({"loss": 0.5}, step=3)
    writer.save()
    assert (tmp_path / "writer" / "metrics.csv").read_text().splitlines() == ["loss,step", "0.5,3"]
