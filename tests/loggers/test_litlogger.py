"""LitLogger against a recording fake of the `litlogger` package (no network, litlogger not installed).

The expected call sequences are what Lightning 2.6.6's LitLogger made with the same fake for the same script
(recorded in a scratch venv), with the creation-time version replaced by `<ver>`.
"""

import json
import re
import sys
from argparse import Namespace

import pytest
import torch
from torch import nn

from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import LitLogger
from fulmen.loggers.logger import DummyExperiment
from fulmen.utilities.rank_zero import rank_zero_only
from helpers.logger_probes import fake_package, fit_logged, recorded


@pytest.fixture
def calls(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with fake_package("litlogger") as recorded_calls:
        yield recorded_calls


def _calls(calls, logger, root=None):
    """The recorded calls with the logger's version (its creation time) written as `<ver>`."""
    return json.loads(json.dumps(recorded(calls, root)).replace(logger.version, "<ver>"))


def _experiment(name, log_dir, teamspace=None, metadata=None, save_logs=True):
    return [["litlogger.Experiment", [], {"name": name, "teamspace": teamspace, "metadata": metadata or {},
                                          "store_step": True, "store_created_at": True, "log_dir": log_dir,
                                          "save_logs": save_logs}],
            ["litlogger.experiment.print_url", [], {}]]


HPARAMS = [["litlogger.experiment.set", ["lr", "0.1"], {}], ["litlogger.experiment.set", ["width", "4"], {}]]


def _epoch(epoch):
    step = 2 * epoch

    def append(key, value, at):
        return ["litlogger.experiment.append", [key, value], {"step": at}]

    return [append("a", 10.0 * epoch, step), append("epoch", epoch, step), append("a", 10.0 * epoch + 1, step + 1),
            append("epoch", epoch, step + 1), append("v", float(epoch), step + 1), append("epoch", epoch, step + 1)]


def _model(key, path, version):
    return ["litlogger.experiment.set", [key, ["Model", [path], {"version": version}]], {}]


def test_fit_with_log_model_uploads_checkpoints_at_the_end(calls, tmp_path):
    logger = LitLogger(root_dir=tmp_path / "ll", name="exp", teamspace="ts", metadata={"k": 1}, log_model=True,
                       save_logs=False)
    with pytest.warns(UserWarning, match="cannot log the model graph"):
        trainer = fit_logged(tmp_path, logger, ModelCheckpoint(monitor="v", save_top_k=2))

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\+00-00", logger.version)
    folder = "ll/exp/exp/<ver>/checkpoints"
    assert _calls(calls, logger, tmp_path) == [
        *_experiment("exp-<ver>", "ll/exp", "ts", {"k": "1"}, save_logs=False), *HPARAMS, *_epoch(0), *_epoch(1),
        _model("exp-<ver>", f"{folder}/epoch=0-step=2.ckpt", "4"),
        _model("exp-<ver>", f"{folder}/epoch=1-step=4.ckpt", "4"),
        ["litlogger.experiment.finalize", ["success"], {}],
    ]
    assert (logger.name, logger.root_dir) == ("exp", str(tmp_path / "ll"))
    assert logger.log_dir == logger.save_dir == str(tmp_path / "ll" / "exp")
    assert trainer.checkpoint_callback.dirpath == str(tmp_path / "ll" / "exp" / "exp" / logger.version / "checkpoints")


def test_save_top_k_all_uploads_each_checkpoint_as_saved(calls, tmp_path):
    logger = LitLogger(name="e", log_model=True)
    with pytest.warns(UserWarning, match="model graph"):
        fit_logged(tmp_path, logger, ModelCheckpoint(save_top_k=-1))
    folder = "./lightning_logs/e/e/<ver>/checkpoints"
    assert _calls(calls, logger) == [
        *_experiment("e-<ver>", "./lightning_logs/e"), *HPARAMS, *_epoch(0),
        _model("e-<ver>", f"{folder}/epoch=0-step=2.ckpt", "2"), *_epoch(1),
        _model("e-<ver>", f"{folder}/epoch=1-step=4.ckpt", "4"),
        ["litlogger.experiment.finalize", ["success"], {}],
    ]


def test_direct_calls(calls, tmp_path):
    logger = LitLogger(checkpoint_name="cn")
    assert logger.name == "generated-name" and logger.version is None
    logger.log_metrics({"x": torch.tensor(1.0)})
    logger.log_metrics({"x": 2.0})
    logger.log_metrics({"x": 3.0}, step=10)
    logger.log_metrics({"x": 4.0})  # one past the last step
    logger.log_hyperparams(Namespace(a=1, b=[1]))
    logger.log_metadata({"m": 2})
    logger.log_model(nn.Linear(2, 2), staging_dir="s", version="v1", metadata={"a": "b"})
    logger.log_model(nn.Linear(2, 2))
    logger.log_model_artifact("model.pt")
    logger.log_file(str(tmp_path / "cfg.yaml"))
    path = logger.get_file(str(tmp_path / "cfg.yaml"))
    assert logger.url == f"https://lightning.ai/fake/generated-name-{logger.version}"
    logger.finalize("success")

    def append(value, step):
        return ["litlogger.experiment.append", ["x", value], {"step": step}]

    def model(what, options):
        return ["litlogger.experiment.set", ["generated-name-<ver>", ["Model", [what], options]], {}]

    assert _calls(calls, logger, tmp_path) == [
        *_experiment("generated-name-<ver>", "./lightning_logs/generated-name"),
        append(1.0, 0), append(2.0, 1), append(3.0, 10), append(4.0, 11),
        ["litlogger.experiment.set", ["a", "1"], {}], ["litlogger.experiment.set", ["b", "[1]"], {}],
        ["litlogger.experiment.set", ["m", "2"], {}],
        model("Linear", {"version": "v1", "metadata": {"a": "b"}, "staging_dir": "s"}),
        model("Linear", {"version": "11", "metadata": None, "staging_dir": None}),
        model("model.pt", {"version": "11"}),
        ["litlogger.experiment.set", ["cfg.yaml", ["File", ["cfg.yaml"], {}]], {}],
        ["litlogger.experiment.file.save", ["cfg.yaml", "cfg.yaml"], {}],
        ["litlogger.experiment.finalize", ["success"], {}],
    ]
    assert path == str(tmp_path / "cfg.yaml")


def test_only_rank_zero_writes(calls, monkeypatch, tmp_path):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = LitLogger(root_dir=tmp_path / "ll", name="e")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.log_hyperparams({"a": 1})
    logger.finalize("success")
    assert isinstance(logger.experiment, DummyExperiment) and logger.version is None
    assert calls == [] and not (tmp_path / "ll").exists()


def test_missing_litlogger_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "litlogger", None)
    with pytest.raises(ModuleNotFoundError, match="pip install litlogger"):
        LitLogger(name="x")


def test_other_ranks_use_rank_zeros_version(calls, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from fulmen.loggers.selection import share_logger_versions

    first = LitLogger(name="e")
    first.experiment
    shared = []
    share_logger_versions([first], SimpleNamespace(world_size=2, is_global_zero=True,
                                                   broadcast=lambda value: shared.append(value) or value))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    other = LitLogger(name="e")
    share_logger_versions([other], SimpleNamespace(world_size=2, is_global_zero=False, broadcast=lambda _: shared[0]))
    assert other.version == first.version is not None
    assert [call[0] for call in recorded(calls)].count("litlogger.Experiment") == 1
