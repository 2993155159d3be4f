"""Resuming or loading from a checkpoint that does not fit the run fails clearly, naming the problem and the fix."""

import pytest
import torch
from torch import nn

from helpers.tiny import TinyModule, make_loader, quiet_trainer


class ConfigurableOptimizers(TinyModule):
    """TinyModule whose `configure_optimizers` is chosen per test."""

    def __init__(self, make=None):
        super().__init__()
        self.make = make

    def configure_optimizers(self):
        return self.make(self) if self.make else super().configure_optimizers()


def _sgd_momentum(module):
    return torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)


def _adam(module):
    return torch.optim.Adam(module.parameters(), lr=0.01)


def _sgd_two_groups(module):
    return torch.optim.SGD([{"params": [module.layer.weight]}, {"params": [module.layer.bias], "lr": 0.01}], lr=0.1)


def _sgd_and_adam(module):
    return [_sgd_momentum(module), _adam(module)]


def _sgd_with_steplr(module):
    optimizer = _sgd_momentum(module)
    return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]


def _sgd_with_cosine(module):
    optimizer = _sgd_momentum(module)
    return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)]


def _checkpoint(tmp_path, make=_sgd_momentum, weights_only=False):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(ConfigurableOptimizers(make), make_loader(32))
    path = tmp_path / ("weights.ckpt" if weights_only else "full.ckpt")
    trainer.save_checkpoint(path, weights_only=weights_only)
    return path


def test_fit_from_a_weights_only_checkpoint_says_what_is_missing_and_how_to_load_weights(tmp_path):
    path = _checkpoint(tmp_path, weights_only=True)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    model = ConfigurableOptimizers(_sgd_momentum)
    with pytest.raises(KeyError) as raised:
        trainer.fit(model, make_loader(32), ckpt_path=path)
    message = str(raised.value)
    assert "only the model weights" in message and "optimizer_states" in message and "lr_schedulers" in message
    assert "load_from_checkpoint" in message and "without `ckpt_path`" in message
    assert trainer.global_step == 0 and model.calls["training_step"] == 0  # nothing resumed half-way

    # The fix the message suggests works.
    model = ConfigurableOptimizers.load_from_checkpoint(path, make=_sgd_momentum)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, make_loader(32))
    assert trainer.global_step == 4


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluation_from_a_weights_only_checkpoint_keeps_working(tmp_path, stage):
    path = _checkpoint(tmp_path, weights_only=True)
    expected = torch.load(path)["state_dict"]["layer.weight"]
    model = ConfigurableOptimizers()
    trainer = quiet_trainer(tmp_path)
    getattr(trainer, stage)(model, make_loader(16, targets=stage != "predict"), ckpt_path=path)
    torch.testing.assert_close(model.layer.weight, expected)


@pytest.mark.parametrize("saved, now, expected", [
    (_sgd_momentum, _adam, r"optimizer 0.*'momentum'.*`Adam`.*'betas'.*different optimizer type"),
    (_adam, _sgd_momentum, r"optimizer 0.*'betas'.*`SGD`.*'momentum'.*different optimizer type"),
    (_sgd_momentum, _sgd_two_groups, r"optimizer 0 \(SGD\).*1 parameter groups, the optimizer now has 2"),
    (_sgd_momentum, _sgd_and_adam, r"number of optimizers.*it has 1.*returned 2"),
    (_sgd_momentum, _sgd_with_steplr, r"number of learning-rate schedulers.*it has 0.*returned 1"),
    (_sgd_with_steplr, _sgd_with_cosine, r"scheduler 0.*`CosineAnnealingLR`.*different scheduler type"),
], ids=["sgd_to_adam", "adam_to_sgd", "param_groups", "optimizer_count", "scheduler_count", "scheduler_type"])
def test_resume_with_a_different_optimizer_setup_names_the_mismatch(tmp_path, saved, now, expected):
    path = _checkpoint(tmp_path, make=saved)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    model = ConfigurableOptimizers(now)
    model.automatic_optimization = now is not _sgd_and_adam  # two optimizers need manual optimization
    with pytest.raises(ValueError, match=expected) as raised:
        trainer.fit(model, make_loader(32), ckpt_path=path)
    assert "load_from_checkpoint" in str(raised.value)


class Wider(TinyModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(32, 5)


def test_load_from_checkpoint_into_another_architecture_explains_and_mentions_strict(tmp_path):
    path = _checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match=r"does not fit `Wider`.*different architecture.*strict=False") as raised:
        Wider.load_from_checkpoint(path)
    assert "size mismatch" in str(raised.value)  # torch's own detail is kept


@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_trainer_ckpt_path_into_another_architecture_explains_and_mentions_strict_loading(tmp_path, stage):
    path = _checkpoint(tmp_path)
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    with pytest.raises(RuntimeError, match=r"does not fit `Wider`.*strict_loading = False"):
        getattr(trainer, stage)(Wider(), make_loader(16), ckpt_path=path)
