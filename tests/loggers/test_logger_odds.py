"""Logger details Lightning 2.6 has: `LOGGER_JOIN_CHAR` joins `prefix` and metric names,
`TensorBoardLogger.log_hyperparams(params, metrics, step)`, `CSVLogger.log_hyperparams()` without arguments and
the base class's defaults. Files and values were checked against Lightning 2.6.6 with the same calls."""

import os

import pytest
import yaml

from fulmen.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from helpers.logger_probes import fake_package, recorded


@pytest.mark.parametrize("logger_class", [CSVLogger, TensorBoardLogger, WandbLogger, "MLFlowLogger", "LitLogger"])
def test_join_char_is_a_dash(logger_class):
    if isinstance(logger_class, str):
        import fulmen.loggers

        logger_class = getattr(fulmen.loggers, logger_class)
    assert logger_class.LOGGER_JOIN_CHAR == "-"


def test_csv_prefix_uses_the_join_char(tmp_path):
    class Slash(CSVLogger):
        LOGGER_JOIN_CHAR = "/"

    logger = Slash(tmp_path, prefix="p")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.save()
    assert open(os.path.join(logger.log_dir, "metrics.csv")).readline().strip() == "p/x,step"


def test_tensorboard_prefix_uses_the_join_char(tmp_path):
    pytest.importorskip("tensorboard")

    class Slash(TensorBoardLogger):
        LOGGER_JOIN_CHAR = "/"

    logger = Slash(tmp_path, prefix="p")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert _scalars(logger.log_dir) == {"p/x": [(0, 1.0)]}


def test_mlflow_prefix_uses_the_join_char(tmp_path):
    pytest.importorskip("mlflow")
    from fulmen.loggers import MLFlowLogger

    class Slash(MLFlowLogger):
        LOGGER_JOIN_CHAR = "/"

    logger = Slash(save_dir=str(tmp_path / "mlruns"), prefix="p")
    logger.log_metrics({"x": 1.0}, step=0)
    assert "p/x" in logger.experiment.get_run(logger.run_id).data.metrics


def test_wandb_prefix_uses_the_join_char(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Slash(WandbLogger):
        LOGGER_JOIN_CHAR = "/"

    with fake_package("wandb") as calls:
        Slash(prefix="p").log_metrics({"x": 1.0})
    assert recorded(calls)[-1] == ("wandb.run.log", [{"p/x": 1.0}], {})


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize(("options", "expected"), [
    ({"metrics": 0.5, "step": 3}, {"p-hp_metric": [(3, 0.5)]}),  # a number is the hp_metric
    ({"metrics": {"acc": 1.0}, "step": 2}, {"p-acc": [(2, 1.0)]}),
    ({}, {"p-hp_metric": [(0, -1.0)]}),
    ({"step": 7}, {"p-hp_metric": [(7, -1.0)]}),
])
def test_tensorboard_log_hyperparams_with_metrics_and_step(tmp_path, options, expected):
    pytest.importorskip("tensorboard")
    logger = TensorBoardLogger(tmp_path, prefix="p")
    logger.log_hyperparams({"a": 1, "n": {"b": 2}}, **options)
    logger.finalize("success")
    assert _scalars(logger.log_dir) == expected
    assert yaml.safe_load(open(os.path.join(logger.log_dir, "hparams.yaml"))) == {"a": 1, "n": {"b": 2}}


def test_csv_log_hyperparams_without_arguments_writes_empty_hparams(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams()
    logger.save()
    assert open(os.path.join(logger.log_dir, "hparams.yaml")).read() == "{}\n"


def test_base_logger_defaults():
    saved = []

    class Minimal(Logger):
        name = "m"
        version = 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def save(self):
            saved.append(True)

    logger = Minimal()
    assert (logger.root_dir, logger.log_dir, logger.save_dir, logger.group_separator) == (None, None, None, "/")
    assert logger.log_graph(object()) is None and logger.after_save_checkpoint(object()) is None
    logger.finalize("success")
    assert saved == [True]  # finalize saves by default
