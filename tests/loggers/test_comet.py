"""CometLogger against a recording fake of `comet_ml` (no network, comet_ml not installed).

The expected call sequences are what Lightning 2.6.6's CometLogger made with the same fake for the same script
(recorded in a scratch venv); fulmen must make the same calls, except where a test says it differs.
"""

import logging
import os
import pickle
import sys
from argparse import Namespace

import pytest
import torch
from torch import nn

from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import CometLogger
from fulmen.loggers.logger import DummyExperiment
from fulmen.utilities.rank_zero import rank_zero_only
from helpers.logger_probes import fake_package, fit_logged, recorded

FRAMEWORK = {"framework": "pytorch-lightning"}


@pytest.fixture
def calls(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with fake_package("comet_ml") as recorded_calls:
        yield recorded_calls


def _start(config, **arguments):
    start = {"api_key": None, "workspace": None, "project": None, "experiment_key": None, "mode": None,
             "online": None, **arguments, "experiment_config": config}
    return [("comet_ml.ExperimentConfig", [], config), ("comet_ml.start", [], start),
            ("comet_ml.experiment.log_other", ["Created from", "pytorch-lightning"], {})]


def _metrics(values, step, epoch, prefix=None):
    return ("comet_ml.experiment.__internal_api__log_metrics__", [values],
            {"step": step, "epoch": epoch, "prefix": prefix, **FRAMEWORK})


def test_fit_makes_lightnings_calls(calls, tmp_path):
    key = "k" * 32
    logger = CometLogger(api_key="k", workspace="w", project="p", experiment_key=key, mode="create", online=False,
                         prefix="pre", name="exp", offline_directory=str(tmp_path / "off"))
    trainer = fit_logged(tmp_path, logger, ModelCheckpoint(monitor="v"))

    config = {"name": "exp", "offline_directory": "off", "disabled": True}
    assert recorded(calls, tmp_path) == [
        *_start(config, api_key="k", workspace="w", project="p", experiment_key=key, mode="create", online=False),
        ("comet_ml.experiment.__internal_api__log_parameters__", [],
         {"parameters": {"lr": 0.1, "width": 4}, **FRAMEWORK, "flatten_nested": True, "source": "manual"}),
        ("comet_ml.experiment.__internal_api__set_model_graph__", [], {"graph": "StepLogger", **FRAMEWORK}),
        _metrics({"a": 0.0}, 0, 0, "pre"), _metrics({"a": 1.0}, 1, 0, "pre"), _metrics({"v": 0.0}, 1, 0, "pre"),
        _metrics({"a": 10.0}, 2, 1, "pre"), _metrics({"a": 11.0}, 3, 1, "pre"), _metrics({"v": 1.0}, 3, 1, "pre"),
        ("comet_ml.experiment.flush", [], {}),
    ]
    assert (logger.name, logger.version, logger.save_dir) == ("p", key, str(tmp_path / "off"))
    assert trainer.checkpoint_callback.dirpath == str(tmp_path / "off" / "p" / key / "checkpoints")


def test_direct_calls(calls):
    logger = CometLogger(project="p")
    logger.log_hyperparams(Namespace(a=1, b={"c": 2}))
    logger.log_metrics({"x": torch.tensor(1.0), "epoch": 3}, step=5)
    logger.log_metrics({"y": 1.0})
    logger.log_graph(nn.Linear(2, 2))
    logger.finalize("failed")
    assert recorded(calls)[3:] == [
        ("comet_ml.experiment.__internal_api__log_parameters__", [],
         {"parameters": {"a": 1, "b": {"c": 2}}, **FRAMEWORK, "flatten_nested": True, "source": "manual"}),
        _metrics({"x": 1.0}, 5, 3), _metrics({"y": 1.0}, None, None),
        ("comet_ml.experiment.__internal_api__set_model_graph__", [], {"graph": "Linear", **FRAMEWORK}),
        ("comet_ml.experiment.flush", [], {}),
    ]


def test_old_argument_names_are_accepted_with_a_warning(calls, caplog):
    with caplog.at_level(logging.WARNING):
        logger = CometLogger(experiment_name="old", project_name="pn", save_dir="sd")
    assert "`experiment_name` argument is deprecated" in caplog.text and "use `offline_directory`" in caplog.text
    assert (logger.name, logger.save_dir) == ("pn", "sd")
    # Given next to their new names, the old ones stay in the settings (Lightning quirk), except experiment_name.
    both = CometLogger(name="n", experiment_name="old", project="p", project_name="pn", online=True, offline=False,
                       offline_directory="o", save_dir="sd")
    assert (both.name, both.save_dir) == ("p", "o")
    assert recorded(calls)[:2] == _start({"name": "old", "offline_directory": "sd"}, project="pn")[:2]
    assert recorded(calls)[3:5] == _start({"name": "n", "project_name": "pn", "offline": False,
                                           "offline_directory": "o", "save_dir": "sd"}, project="p", online=True)[:2]


def test_old_offline_true_runs_offline(calls):
    # Differs from Lightning 2.6, which turns `offline=True` into `online=True` and so sends the run to Comet.
    CometLogger(offline=True)
    assert recorded(calls)[:2] == _start({"disabled": True}, online=False)[:2]


def test_pickled_logger_keeps_the_experiment_key(calls):
    logger = CometLogger(project="p")
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._experiment is None and copy._experiment_key == logger.version
    assert copy.experiment.get_key() != ""  # the copy starts its experiment when first used
    starts = [call[2]["experiment_key"] for call in recorded(calls) if call[0] == "comet_ml.start"]
    assert starts == [None, logger.version]


def test_only_rank_zero_starts_and_writes(calls, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CometLogger(project="p")
    logger.log_metrics({"x": 1.0}, step=1)
    logger.log_hyperparams({"a": 1})
    logger.finalize("success")
    assert logger.version is None and isinstance(logger.experiment, DummyExperiment)
    assert recorded(calls) == [("comet_ml.ExperimentConfig", [], {})]


def test_no_experiment_is_a_clear_error(calls):
    sys.modules["comet_ml"].fail_start = True
    with pytest.raises(Exception, match="returned no experiment") as error:
        CometLogger(project="p")
    assert type(error.value).__name__ == "ExperimentNotFound"


def test_auto_logging_is_switched_off_before_comet_is_imported(calls, monkeypatch):
    monkeypatch.delenv("COMET_DISABLE_AUTO_LOGGING", raising=False)
    CometLogger()
    assert os.environ["COMET_DISABLE_AUTO_LOGGING"] == "1"


def test_missing_comet_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "comet_ml", None)
    with pytest.raises(ModuleNotFoundError, match="pip install comet-ml"):
        CometLogger()
