"""Shared pieces of the signature tests (`tests/test_signatures*.py`): each public parameter gets a probe that
passes a non-default value and asserts what it changes, or the clear error it raises. A table's keys must
equal the callable's parameters, so a new parameter without a probe fails the tests."""

import inspect

import pytest

import torch

import fulmen as L
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def raises(error, match, make):
    """True once `make()` raised `error` with a message matching `match` (a probe that expects a clear error)."""
    with pytest.raises(error, match=match):
        make()
    return True


def parameters_of(callable_):
    """The parameter names of `callable_` (a class means its `__init__`), without `self`."""
    target = callable_.__init__ if inspect.isclass(callable_) else callable_
    return [name for name in inspect.signature(target).parameters if name != "self"]


def fit(tmp_path, module=None, train=None, val=None, **flags):
    """Fit `module` (a TinyModule by default) on 2 batches for one epoch; return the trainer."""
    flags.setdefault("max_epochs", 1)
    trainer = quiet_trainer(tmp_path, **flags)
    trainer.fit(module if module is not None else TinyModule(), train or make_loader(16), val)
    return trainer


class StopRequest(TinyModule):
    """Asks to stop after every batch (so min_epochs/min_steps must keep training going)."""

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.trainer.should_stop = True


class ScoreModule(TinyModule):
    """Logs `score` = `scores[epoch]` at the end of every training epoch."""

    def __init__(self, scores, **kwargs):
        super().__init__(**kwargs)
        self.scores = scores

    def on_train_epoch_end(self):
        self.log("score", float(self.scores[min(self.current_epoch, len(self.scores) - 1)]))


class SeenModes(TinyModule):
    """Records whether inference mode / anomaly detection were on in the steps."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def training_step(self, batch, batch_idx):
        self.seen["anomaly"] = torch.is_anomaly_enabled()
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.seen["inference"] = torch.is_inference_mode_enabled()
        return super().validation_step(batch, batch_idx)


class CountingLoaders(TinyModule):
    def __init__(self):
        super().__init__()
        self.train_loader_calls = 0

    def train_dataloader(self):
        self.train_loader_calls += 1
        return make_loader(16)


class HparamsModule(TinyModule):
    def __init__(self, width=3):
        super().__init__()
        self.save_hyperparameters()


def trainer_only(**flags):
    flags.setdefault("logger", False)
    return L.Trainer(enable_progress_bar=False, enable_model_summary=False, **flags)
