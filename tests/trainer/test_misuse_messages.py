"""Mistakes get an error naming the hook or argument and the fix, not a raw torch error."""

import re

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class LossFrom(TinyModule):
    def __init__(self, make_loss):
        super().__init__()
        self.make_loss = make_loss

    def training_step(self, batch, batch_idx):
        return self.make_loss(self, batch)


def _per_sample(module, batch):
    x, y = batch
    return nn.functional.cross_entropy(module(x), y, reduction="none")


@pytest.mark.parametrize("make_loss, expected", [
    # RuntimeError for a loss without grad: the type torch's backward raises in Lightning.
    (lambda m, b: m.loss(b).detach(), r"RuntimeError: `training_step` returned a loss that does not require grad.*"
                                      r"detached"),
    (lambda m, b: {"loss": m.loss(b).detach()}, r"RuntimeError: `training_step` returned a loss that does not "
                                                r"require grad"),
    (lambda m, b: m.loss(b).item(), r"Misconfiguration.*must return a Tensor, a dict, or None .*returned float"),
    (lambda m, b: {"loss": m.loss(b).item()}, r"`training_step` returned a loss of type float.*not.*`loss\.item\(\)`"),
    (_per_sample, r"`training_step` returned a loss of shape \(8,\); the loss must be a scalar.*`loss\.mean\(\)`"),
], ids=["detached", "detached_in_dict", "python_float", "python_float_in_dict", "per_sample"])
def test_training_step_loss_backward_cannot_use_names_training_step_and_the_fix(tmp_path, make_loss, expected):
    with pytest.raises((MisconfigurationException, RuntimeError)) as raised:
        quiet_trainer(tmp_path, max_epochs=1).fit(LossFrom(make_loss), make_loader(16))
    assert re.search(expected, f"{type(raised.value).__name__}: {raised.value}")


def test_a_frozen_model_says_no_parameter_requires_grad(tmp_path):
    model = TinyModule()
    model.layer.requires_grad_(False)
    with pytest.raises(RuntimeError, match=r"does not require grad.*all frozen"):
        quiet_trainer(tmp_path, max_epochs=1).fit(model, make_loader(16))


def test_valid_losses_still_train(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(LossFrom(lambda m, b: m.loss(b).reshape(1)), make_loader(16))  # one element is fine, like torch
    assert trainer.global_step == 2


class NoForward(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(32, 2)


def test_predict_without_predict_step_or_forward_names_both(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"neither `predict_step\(\)` nor `forward\(\)`.*Define"):
        quiet_trainer(tmp_path).predict(NoForward(), make_loader(16, targets=False))


def test_predict_with_forward_only_uses_it(tmp_path):
    class WithForward(NoForward):
        def forward(self, x):
            return self.layer(x)

    predictions = quiet_trainer(tmp_path).predict(WithForward(), make_loader(16, targets=False))
    assert [tuple(p.shape) for p in predictions] == [(8, 2), (8, 2)]


@pytest.mark.parametrize("value", [-1, -0.5, 1.5, "all", True])
@pytest.mark.parametrize("flag", ["limit_train_batches", "limit_val_batches", "limit_test_batches",
                                  "limit_predict_batches"])
def test_invalid_limit_lists_the_valid_values(flag, value):
    with pytest.raises(MisconfigurationException, match=rf"You have passed invalid value .* for {flag}, it has to be in "
                                                        rf"\[0\.0, 1\.0\] or an int: valid values are an int >= 0 .*"
                                                        rf"a float in \[0\.0, 1\.0\].*or None; for all batches use "
                                                        rf"`{flag}=1\.0`"):
        L.Trainer(**{flag: value})
