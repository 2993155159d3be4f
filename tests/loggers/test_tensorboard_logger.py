"""TensorBoardLogger: event files as TensorBoard's own reader sees them, hp_metric, graph, hparams.yaml.

Tags and steps were checked against Lightning 2.6 (3 train batches, 2 val batches, 2 epochs,
log_every_n_steps=2).
"""

import pytest
import torch
import yaml

from fulmen.loggers import TensorBoardLogger
from fulmen.utilities.rank_zero import rank_zero_only
from helpers.log_fixtures import LossLoggingModule, fit_with

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _events(log_dir):
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return accumulator


def _scalar_steps(events):
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scalars_have_lightning_steps(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger)
    steps = _scalar_steps(_events(logger.log_dir))
    assert steps == {
        "hp_metric": [0],
        "train_loss": [1, 3, 5],
        "val_loss": [2, 5],
        "epoch": [1, 2, 3, 5, 5],
    }


def test_epoch_scalar_values(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger)
    assert [event.value for event in _events(logger.log_dir).Scalars("epoch")] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_scalar_values_match_logged_metrics(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    trainer = fit_with(tmp_path, logger)
    events = _events(logger.log_dir)
    assert events.Scalars("val_loss")[-1].value == pytest.approx(trainer.callback_metrics["val_loss"].item())
    assert events.Scalars("train_loss")[-1].value == pytest.approx(trainer.logged_metrics["train_loss"].item())


def test_hp_metric_is_minus_one_when_hparams_are_saved(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger)
    (event,) = _events(logger.log_dir).Scalars("hp_metric")
    assert (event.step, event.value) == (0, -1.0)


def test_no_hp_metric_with_default_hp_metric_false(tmp_path):
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    fit_with(tmp_path, logger)
    assert "hp_metric" not in _events(logger.log_dir).Tags()["scalars"]


def test_no_hp_metric_without_saved_hyperparameters(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger, LossLoggingModule(save_hparams=False))
    assert "hp_metric" not in _events(logger.log_dir).Tags()["scalars"]


def test_hparams_yaml_is_written_next_to_events(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger, LossLoggingModule(lr=0.2, hidden=8))
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert logger.log_dir == str(run_dir)
    assert yaml.safe_load((run_dir / "hparams.yaml").read_text()) == {"lr": 0.2, "hidden": 8}
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


def test_log_graph_writes_graph_with_example_input_array(tmp_path):
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    fit_with(tmp_path, logger, LossLoggingModule(example_input=True), epochs=1)
    events = _events(logger.log_dir)
    assert events.Tags()["graph"] is True
    node_names = [node.name for node in events.Graph().node]
    assert "input/x" in node_names  # traced from the module's forward(x)
    assert any("Linear[layer]" in name for name in node_names)


def test_log_graph_without_example_input_array_warns(tmp_path):
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    with pytest.warns(UserWarning, match="Could not log computational graph to TensorBoard: The "
                                         "`model.example_input_array` attribute is not set"):
        fit_with(tmp_path, logger, epochs=1)
    assert _events(logger.log_dir).Tags()["graph"] is False


def test_log_graph_of_a_module_outside_a_trainer(tmp_path):
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    module = LossLoggingModule()
    logger.log_graph(module, torch.randn(2, 32))  # tracing reads `module.trainer`: it must not raise there
    logger.save()
    assert _events(logger.log_dir).Tags()["graph"] is True
    with pytest.warns(UserWarning, match="has type <class 'list'> which can't be traced by TensorBoard"):
        logger.log_graph(module, [torch.randn(2, 32)])


def test_hyperparameters_of_more_than_one_dimension_are_logged_as_text(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"matrix": torch.zeros(2, 2), "lr": 0.1})  # as Lightning: no TypeError from TensorBoard
    logger.save()
    assert yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text())["lr"] == 0.1


def test_no_graph_by_default(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    fit_with(tmp_path, logger, LossLoggingModule(example_input=True), epochs=1)
    assert _events(logger.log_dir).Tags()["graph"] is False


def test_prefix_and_sub_dir(tmp_path):
    logger = TensorBoardLogger(tmp_path, prefix="pre", sub_dir="sub", default_hp_metric=False)
    trainer = fit_with(tmp_path, logger, epochs=1, val_batches=0, every=1)
    assert logger.log_dir == str(tmp_path / "lightning_logs" / "version_0" / "sub") == trainer.log_dir
    assert sorted(_events(logger.log_dir).Tags()["scalars"]) == ["pre-epoch", "pre-train_loss"]


def test_version_auto_increments(tmp_path):
    first, second = TensorBoardLogger(tmp_path), TensorBoardLogger(tmp_path)
    fit_with(tmp_path, first, epochs=1)
    fit_with(tmp_path, second, epochs=1)
    assert (first.version, second.version) == (0, 1)
    assert _scalar_steps(_events(second.log_dir))["train_loss"] == [1]


def test_log_metrics_accepts_tensors_and_dicts(tmp_path):
    logger = TensorBoardLogger(tmp_path, version="direct")
    logger.log_metrics({"t": torch.tensor(1.5), "group": {"a": 1.0, "b": 2.0}}, step=4)
    logger.finalize("success")
    events = _events(logger.log_dir)
    assert [(e.step, e.value) for e in events.Scalars("t")] == [(4, 1.5)]


def test_nothing_written_off_rank_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = TensorBoardLogger(tmp_path / "logs", log_graph=True)
    fit_with(tmp_path, logger, LossLoggingModule(example_input=True), every=1)
    assert not (tmp_path / "logs").exists()
