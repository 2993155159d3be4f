"""Tuner.lr_find: the range test's grid, smoothed losses, suggestion and attribute update match Lightning 2.6.6
(recorded from /tmp/plvenv on the same seeded setups), and the model and Trainer come back exactly as they were."""

import logging
import math
import os
import sys

import pytest
import torch

from fulmen.callbacks import LearningRateFinder
from fulmen.tuner import Tuner
from fulmen.tuner.lr_finder import _LRFinder
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tuner_probes import RegressionModel, make_trainer

# (lr_find kwargs, model kwargs, trainer flags) -> Lightning 2.6.6: number of points, suggestion, smoothed losses at
# the first, middle and last point.
RECORDED = {
    "sgd": ({"num_training": 40}, {}, {}, 38, 1.5848931924611143e-06,
            [5.471167419895975, 16.861321345635755, 26.82417165591204]),
    "adam_linear": ({"num_training": 30, "mode": "linear", "max_lr": 0.5, "min_lr": 1e-4}, {"opt": "adam"}, {}, 30,
                    0.18339666666666665, [5.471167419895975, 10.208553070636261, 5.602274472061261]),
    "diverging": ({"num_training": 100, "max_lr": 100.0}, {}, {}, 80, 1.2589254117941672e-07,
                  [5.471167419895975, 17.386158842146592, 34.553204559899186]),
    "no_early_stop": ({"num_training": 30, "max_lr": 100.0, "early_stop_threshold": None}, {}, {}, 30,
                      4.6415888336127764e-05, [5.471167419895975, 16.973230064234563, 432538547371384.8]),
    "max_epochs_2": ({"num_training": 20}, {}, {"max_epochs": 2}, 16, 0.0002511886431509582,
                     [5.471167419895975, 15.919635850252615, 15.862776889356264]),
}


def _expected_lr(index, kwargs):
    low, high, num = kwargs.get("min_lr", 1e-8), kwargs.get("max_lr", 1.0), kwargs["num_training"]
    if index == 0:
        return low
    fraction = (index + 1) / num  # Lightning's schedule skips the step-1 value
    if kwargs.get("mode") == "linear":
        return low + fraction * (high - low)
    return low * (high / low) ** fraction


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_lr_find_matches_lightning(case, tmp_path):
    kwargs, model_kwargs, flags, count, suggestion, losses = RECORDED[case]
    torch.manual_seed(0)
    model = RegressionModel(**model_kwargs)
    trainer = make_trainer(tmp_path, **flags)
    finder = Tuner(trainer).lr_find(model, **kwargs)
    assert isinstance(finder, _LRFinder)
    lrs, recorded = finder.results["lr"], finder.results["loss"]
    assert len(lrs) == len(recorded) == count
    assert lrs == pytest.approx([_expected_lr(i, kwargs) for i in range(count)], rel=1e-12)
    assert [recorded[0], recorded[count // 2], recorded[-1]] == pytest.approx(losses, rel=1e-5)
    assert finder.suggestion() == pytest.approx(suggestion, rel=1e-12)
    assert model.lr == finder.suggestion()  # update_attr=True by default
    assert trainer.global_step == 0 and trainer.current_epoch == 0
    assert os.listdir(tmp_path) == []  # no temporary checkpoint or anything else left behind


def _snapshot(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_lr_find_leaves_model_and_trainer_as_they_were(tmp_path):
    torch.manual_seed(0)
    model = RegressionModel()
    before = _snapshot(model)
    trainer = make_trainer(tmp_path, max_steps=6)
    callbacks, loggers = list(trainer.callbacks), trainer.loggers
    rng = torch.get_rng_state()
    Tuner(trainer).lr_find(model, num_training=20, update_attr=False)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert all(param.grad is None for param in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert trainer.callbacks == callbacks and trainer.loggers == loggers
    assert (trainer.global_step, trainer.current_epoch, trainer.max_steps) == (0, 0, 6)
    assert trainer.limit_val_batches == 1.0 and trainer.num_sanity_val_steps == 2
    assert trainer.state.finished and trainer.state.stage is None
    assert model.lr == 1e-3
    # Training afterwards is exactly training without the tuner.
    trainer.fit(model)
    torch.manual_seed(0)
    reference = RegressionModel()
    make_trainer(tmp_path, max_steps=6).fit(reference)
    assert all(torch.equal(reference.state_dict()[key], value) for key, value in model.state_dict().items())


def test_lr_find_after_training_starts_from_the_current_step(tmp_path):
    torch.manual_seed(0)
    model = RegressionModel()
    trainer = make_trainer(tmp_path, max_steps=3)
    trainer.fit(model)
    weights = _snapshot(model)
    # Lightning's quirk: the best loss is only set at global step 1, so past it the first point already "diverges".
    assert len(Tuner(trainer).lr_find(model, num_training=10, update_attr=False).results["lr"]) == 1
    finder = Tuner(trainer).lr_find(model, num_training=10, update_attr=False, early_stop_threshold=None)
    assert len(finder.results["lr"]) == 10  # max_steps of the trial: num_training past the current step
    assert trainer.global_step == 3
    assert all(torch.equal(weights[key], value) for key, value in model.state_dict().items())


def test_lr_find_finds_learning_rate_in_hparams(tmp_path):
    class HparamsModel(RegressionModel):
        def __init__(self, learning_rate=1e-3):
            super().__init__()
            self.save_hyperparameters()

    torch.manual_seed(0)
    model = HparamsModel()
    del model.lr
    finder = Tuner(make_trainer(tmp_path)).lr_find(model, num_training=30)
    assert model.hparams.learning_rate == finder.suggestion()


def test_lr_find_errors(tmp_path):
    tuner = Tuner(make_trainer(tmp_path))
    model = RegressionModel()
    with pytest.raises(MisconfigurationException, match="method='fit' is the only valid"):
        tuner.lr_find(model, method="validate")
    with pytest.raises(MisconfigurationException, match="`dataloaders` argument should be None"):
        tuner.lr_find(model, dataloaders=[])
    with pytest.raises(AttributeError, match="attr_name=...") as error:
        missing = RegressionModel()
        del missing.lr
        tuner.lr_find(missing)
    assert "('lr', 'learning_rate')" in str(error.value)
    with pytest.raises(AttributeError, match="was set to nope"):
        tuner.lr_find(model, attr_name="nope")
    configured = make_trainer(tmp_path, callbacks=[LearningRateFinder()])
    with pytest.raises(ValueError, match="already configured with a `LearningRateFinder`"):
        Tuner(configured).lr_find(model)

    class TwoOptimizers(RegressionModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]

    with pytest.raises(MisconfigurationException, match="returned 2, but learning rate finder only works"):
        tuner.lr_find(TwoOptimizers())


def test_lr_find_skipped_with_fast_dev_run(tmp_path):
    with pytest.warns(UserWarning, match="Skipping learning rate finder since `fast_dev_run`"):
        assert Tuner(make_trainer(tmp_path, fast_dev_run=True)).lr_find(RegressionModel()) is None


def test_suggestion_needs_two_points(caplog):
    finder = _LRFinder("exponential", 1e-3, 1.0, 5)
    finder.results = {"lr": [1e-3, 1e-2, 1e-1], "loss": [1.0, 0.5, 0.2]}
    with caplog.at_level(logging.ERROR):
        assert finder.suggestion() is None
    assert "not enough points" in caplog.text
    finder.results = {"lr": [0.1, 0.2, 0.3, 0.4, 0.5], "loss": [3.0, float("nan"), 2.0, 0.5, 0.4]}
    assert finder.suggestion(skip_begin=0, skip_end=1) == 0.4  # the NaN point (lr 0.2) is left out


def test_plot(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    torch.manual_seed(0)
    finder = Tuner(make_trainer(tmp_path)).lr_find(RegressionModel(), num_training=40)
    figure = finder.plot(suggest=True)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Learning rate" and ax.get_ylabel() == "Loss"
    line, point = ax.lines
    assert list(line.get_xdata()) == finder.results["lr"]
    assert point.get_color() == "red" and point.get_xdata()[0] == finder.suggestion()
    assert ax.get_legend().get_texts()[1].get_text() == f"suggested lr = {finder.suggestion():.3g}"
    import matplotlib.pyplot as plt

    _, own_ax = plt.subplots()
    assert finder.plot(ax=own_ax) is own_ax.figure and len(own_ax.lines) == 1


def test_plot_without_matplotlib_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    finder = _LRFinder("linear", 0.1, 1.0, 3)
    finder.results = {"lr": [0.1, 0.5, 1.0], "loss": [1.0, 0.5, 0.7]}
    with pytest.raises(MisconfigurationException, match="pip install -U matplotlib"):
        finder.plot()


def test_manual_optimization_keeps_learning_rate_flat(tmp_path):
    class Manual(RegressionModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            loss = super().training_step(batch, batch_idx)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            return loss

    torch.manual_seed(0)
    finder = Tuner(make_trainer(tmp_path)).lr_find(Manual(), num_training=5, update_attr=False)
    assert not math.isnan(finder.results["loss"][0]) and len(finder.results["lr"]) == 5


def test_metrics_and_progress_bar(tmp_path, capsys):
    torch.manual_seed(0)
    model = RegressionModel()
    trainer = make_trainer(tmp_path, max_steps=2, enable_progress_bar=True)
    trainer.fit(model)
    bar = trainer.progress_bar_callback
    assert "train_loss" in trainer.callback_metrics
    capsys.readouterr()
    finder = Tuner(trainer).lr_find(model, num_training=5, update_attr=False, early_stop_threshold=None)
    assert len(finder.results["lr"]) == 5
    # The trial's own bar is shown; what the trial logged is not published (the tuner's call, like any new call,
    # starts with no metrics, and the trial's `train_loss` does not leak out of it).
    assert "Finding best initial lr" in capsys.readouterr().err
    assert trainer.progress_bar_callback is bar
    assert trainer.callback_metrics == {} and trainer.logged_metrics == {}


def test_lr_find_with_dataloaders_passed_in(tmp_path):
    from torch.utils.data import DataLoader

    from helpers.tuner_probes import regression_data

    torch.manual_seed(0)
    model = RegressionModel()
    given = DataLoader(regression_data(), batch_size=8, shuffle=True)
    finder = Tuner(make_trainer(tmp_path)).lr_find(model, train_dataloaders=given, num_training=40)
    # The same data as the module's own hook gives, so the same result as the recorded "sgd" case.
    assert finder.suggestion() == pytest.approx(RECORDED["sgd"][4], rel=1e-12)
    assert [stage for stage, _ in model.requests] == ["val"]  # training data came from the argument
