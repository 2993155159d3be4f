"""MLFlowLogger against a local file store in tmp_path: metrics with steps, params, run status, ids."""

import pytest

from helpers.log_fixtures import LossLoggingModule, fit_with, log_trainer
from helpers.tiny import make_loader

pytest.importorskip("mlflow")
from fulmen.loggers import MLFlowLogger  # noqa: E402


class _NestedHparamsModule(LossLoggingModule):
    def __init__(self, lr=0.1, optimizer={"name": "sgd", "momentum": 0.9}):  # noqa: B006 - read-only default
        super().__init__(lr=lr, save_hparams=False)
        self.save_hyperparameters()


def _fit(tmp_path, logger, module=None):
    return fit_with(tmp_path, logger, module, epochs=2, train_batches=2, val_batches=1, every=1)


@pytest.fixture
def finished_run(tmp_path):
    logger = MLFlowLogger(experiment_name="exp", save_dir=str(tmp_path / "mlruns"))
    trainer = _fit(tmp_path, logger, _NestedHparamsModule())
    return logger, trainer, logger.experiment.get_run(logger.run_id)


def test_metrics_are_in_the_run(finished_run):
    logger, trainer, run = finished_run
    assert set(run.data.metrics) == {"train_loss", "val_loss", "epoch"}
    assert run.data.metrics["val_loss"] == pytest.approx(trainer.callback_metrics["val_loss"].item())
    assert run.data.metrics["epoch"] == 1.0


def test_metric_history_has_lightning_steps(finished_run):
    logger, _, _ = finished_run
    client = logger.experiment

    def steps(key):
        return [metric.step for metric in client.get_metric_history(logger.run_id, key)]

    assert steps("train_loss") == [0, 1, 2, 3]
    assert steps("val_loss") == [1, 3]
    assert sorted(steps("epoch")) == [0, 1, 1, 2, 3, 3]


def test_params_come_from_save_hyperparameters_flattened(finished_run):
    _, _, run = finished_run
    assert run.data.params == {"lr": "0.1", "optimizer/name": "sgd", "optimizer/momentum": "0.9"}


def test_run_status_is_finished(finished_run):
    _, _, run = finished_run
    assert run.info.status == "FINISHED"


def test_name_is_experiment_id_and_version_is_run_id(finished_run, tmp_path):
    logger, trainer, run = finished_run
    experiment = logger.experiment.get_experiment_by_name("exp")
    assert logger.name == logger.experiment_id == experiment.experiment_id == run.info.experiment_id
    assert logger.version == logger.run_id == run.info.run_id
    assert logger.save_dir == str(tmp_path / "mlruns")
    assert trainer.log_dir == logger.save_dir


def test_failed_fit_ends_run_as_failed(tmp_path):
    class Failing(LossLoggingModule):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = MLFlowLogger(save_dir=str(tmp_path / "mlruns"))
    trainer = log_trainer(tmp_path, logger=logger, limit_train_batches=3, log_every_n_steps=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Failing(), make_loader())
    run = logger.experiment.get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in logger.experiment.get_metric_history(logger.run_id, "train_loss")] == [0]


def test_tracking_uri_and_run_name(tmp_path):
    logger = MLFlowLogger(experiment_name="uri", run_name="first", tracking_uri=f"file:{tmp_path / 'store'}",
                          tags={"team": "fulmen"})
    _fit(tmp_path, logger)
    run = logger.experiment.get_run(logger.run_id)
    assert run.data.tags["mlflow.runName"] == "first"
    assert run.data.tags["team"] == "fulmen"
    assert (tmp_path / "store").is_dir()
    assert run.info.status == "FINISHED"


def test_runs_in_the_same_experiment_share_its_id(tmp_path):
    store = str(tmp_path / "mlruns")
    first, second = MLFlowLogger(save_dir=store), MLFlowLogger(save_dir=store)
    _fit(tmp_path, first)
    _fit(tmp_path, second)
    assert first.name == second.name
    assert first.version != second.version


def test_log_metrics_directly_with_prefix(tmp_path):
    logger = MLFlowLogger(save_dir=str(tmp_path / "mlruns"), prefix="pre")
    logger.log_metrics({"a": 1.0, "b": 2}, step=5)
    logger.finalize("success")
    run = logger.experiment.get_run(logger.run_id)
    assert run.data.metrics == {"pre-a": 1.0, "pre-b": 2.0}
    assert [m.step for m in logger.experiment.get_metric_history(logger.run_id, "pre-a")] == [5]
