"""An optimizer over tensors that are not the module's parameters is caught at setup, not trained silently."""

import pytest
import torch
from torch import nn

from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class OptimizerFrom(TinyModule):
    def __init__(self, make):
        super().__init__()
        self.make = make

    def configure_optimizers(self):
        return self.make(self)


def test_optimizer_over_another_modules_parameters_raises_naming_the_fix(tmp_path):
    model = OptimizerFrom(lambda m: torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(MisconfigurationException, match=r"holds none of this module's parameters.*self\.parameters\(\)"):
        quiet_trainer(tmp_path, max_epochs=1).fit(model, make_loader(16))
    assert model.calls["training_step"] == 0


def test_manual_optimization_names_the_foreign_optimizer(tmp_path):
    def make(module):
        return [torch.optim.SGD(module.parameters(), lr=0.1), torch.optim.Adam(nn.Linear(2, 2).parameters())]

    model = OptimizerFrom(make)
    model.automatic_optimization = False
    with pytest.raises(MisconfigurationException, match=r"optimizer 1 \(Adam\) that holds none"):
        quiet_trainer(tmp_path, max_epochs=1).fit(model, make_loader(16))


def test_optimizer_partly_over_unregistered_tensors_warns(tmp_path):
    extra = torch.zeros(2, requires_grad=True)
    model = OptimizerFrom(lambda m: torch.optim.SGD([*m.parameters(), extra], lr=0.1))
    with pytest.warns(UserWarning, match=r"holding 1 of 3 tensors that are not parameters of this module"):
        quiet_trainer(tmp_path, max_epochs=1).fit(model, make_loader(16))


def test_optimizers_over_the_modules_parameters_or_submodules_pass_silently(tmp_path, recwarn):
    def make(module):
        return torch.optim.SGD([{"params": module.layer.weight}, {"params": module.layer.bias, "lr": 0.01}], lr=0.1)

    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(OptimizerFrom(make), make_loader(16))
    assert trainer.global_step == 2
    assert not [w for w in recwarn if "not parameters of this module" in str(w.message)]
