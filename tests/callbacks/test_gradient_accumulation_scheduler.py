"""GradientAccumulationScheduler: the factor per epoch, which batches step, and Lightning's errors.

Expected values were recorded with Lightning 2.6.6 (same model, data and seed, torch 2.13 CPU).
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import GradientAccumulationScheduler
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import quiet_trainer


class StepRecorder(L.LightningModule):
    """Linear(4, 1) on x**2; records `(epoch, batch_idx, trainer.accumulate_grad_batches)` at each optimizer step."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.steps = []
        self.losses = []

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        self.steps.append((epoch, batch_idx, self.trainer.accumulate_grad_batches))
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)


def _fit(tmp_path, scheduling, n=7, max_epochs=4, **flags):
    torch.manual_seed(0)
    module = StepRecorder()
    loader = DataLoader(TensorDataset(torch.randn(n, 4)), batch_size=1)
    trainer = quiet_trainer(tmp_path, max_epochs=max_epochs, callbacks=[GradientAccumulationScheduler(scheduling)],
                            **flags)
    trainer.fit(module, loader)
    return trainer, module


def test_factor_changes_per_epoch_and_last_batch_steps_as_lightning(tmp_path):
    with pytest.warns(UserWarning, match="optimizer_"):  # the module overrides optimizer_step
        trainer, module = _fit(tmp_path, {1: 2, 3: 3})
    # Lightning 2.6.6: 7 batches per epoch; factor 1, 2, 2, 3; the last batch (6) always steps.
    assert module.steps == [
        (0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1), (0, 5, 1), (0, 6, 1),
        (1, 1, 2), (1, 3, 2), (1, 5, 2), (1, 6, 2),
        (2, 1, 2), (2, 3, 2), (2, 5, 2), (2, 6, 2),
        (3, 2, 3), (3, 5, 3), (3, 6, 3),
    ]
    assert trainer.global_step == 18
    assert trainer.accumulate_grad_batches == 3  # stays at the last epoch's factor, as in Lightning
    assert trainer.estimated_stepping_batches == 12  # Lightning reads the current factor: ceil(7 / 3) * 4
    expected = torch.tensor([0.045362118631601334, 0.05187538266181946, -0.02113948203623295, 0.007933727465569973])
    torch.testing.assert_close(module.layer.weight.detach().flatten(), expected, rtol=1e-4, atol=1e-6)


def test_missing_epoch_zero_means_factor_one_and_is_added_to_the_dict():
    scheduling = {2: 4}
    callback = GradientAccumulationScheduler(scheduling)
    assert scheduling == {2: 4, 0: 1} and callback.epochs == [0, 2]
    assert [callback.get_accumulate_grad_batches(epoch) for epoch in range(4)] == [1, 1, 4, 4]
    assert callback.going_to_accumulate_grad_batches()
    assert not GradientAccumulationScheduler({0: 1}).going_to_accumulate_grad_batches()


@pytest.mark.parametrize(("scheduling", "error", "match"), [
    ({}, TypeError, "non-empty"),
    ({-1: 2}, MisconfigurationException, r"Epoch should be an int greater than or equal to 0. Got \[-1\]"),
    ({1.0: 2}, MisconfigurationException, "Epoch should be an int"),
    ({"a": 1}, MisconfigurationException, "Epoch should be an int"),
    ({0: 0}, MisconfigurationException, r"Accumulation factor should be an int greater than 0. Got \[0\]"),
    ({0: 2.0}, MisconfigurationException, "Accumulation factor should be an int"),
])
def test_invalid_scheduling_is_refused(scheduling, error, match):
    with pytest.raises(error, match=match):
        GradientAccumulationScheduler(scheduling)


def test_trainer_flag_and_scheduler_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Either remove `accumulate_grad_batches` from the Trainer or remove the"):
        _fit(tmp_path, {0: 1}, accumulate_grad_batches=2)


def test_manual_optimization_is_refused(tmp_path):
    class Manual(StepRecorder):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[GradientAccumulationScheduler({0: 2})])
    with pytest.raises(RuntimeError, match="not supported for\\s+manual optimization"):
        trainer.fit(Manual(), DataLoader(TensorDataset(torch.randn(4, 4)), batch_size=1))


def test_a_factor_assigned_by_the_user_conflicts(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[GradientAccumulationScheduler({0: 2})])
    trainer.accumulate_grad_batches = 2
    with pytest.raises(ValueError, match="Either remove"):
        trainer.fit(StepRecorder(), DataLoader(TensorDataset(torch.randn(4, 4)), batch_size=1))


def test_assigning_the_factor_is_read_by_the_fit_loop(tmp_path):
    torch.manual_seed(0)
    module = StepRecorder()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.accumulate_grad_batches = 3  # Lightning: a plain attribute the fit loop reads
    trainer.fit(module, DataLoader(TensorDataset(torch.randn(7, 4)), batch_size=1))
    assert [batch for _, batch, _ in module.steps] == [2, 5, 6]
    with pytest.raises(ValueError, match="int >= 1"):
        trainer.accumulate_grad_batches = 0
