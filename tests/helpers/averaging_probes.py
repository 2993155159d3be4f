"""A tiny regression model for the weight-averaging callbacks' tests, and the signature probes of those callbacks.

`AvgModule` and `averaging_loader` are the model and data of the scripts the expected values were recorded with
in a released Lightning 2.6.6 (Linear(4, 8) [+ BatchNorm1d] + ReLU + Linear(8, 1), seed 0; 16 samples, seed 1,
4 batches of 4; SGD lr 0.1): the tests compare fulmen's numbers with Lightning's.
"""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.signature_probes import raises
from helpers.tiny import quiet_trainer


class AvgModule(L.LightningModule):
    """Regression net; records `(epoch, batch_idx, lr, global_step)` per training_step in `self.steps`.

    Args:
        bn: put a BatchNorm1d after the first layer.
        momentum: the SGD momentum.
        scheduler: None, "step" (StepLR, step 1, gamma 0.5, per epoch) or "step-interval" (the same, per step).
        log: `self.log("train_loss", on_step=True, on_epoch=True)` in training_step.
    """

    def __init__(self, bn=False, momentum=0.0, scheduler=None, log=False):
        super().__init__()
        torch.manual_seed(0)
        layers = [nn.Linear(4, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU(), nn.Linear(8, 1)]
        self.net = nn.Sequential(*layers)
        self.momentum, self.scheduler, self.log_loss = momentum, scheduler, log
        self.steps = []
        self.val_weight_sums = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean()
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.steps.append((self.current_epoch, batch_idx, round(lr, 8), self.global_step))
        if self.log_loss:
            self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        if batch_idx == 0:
            self.val_weight_sums.append(float(self.net[0].weight.sum()))
        self.log("val_loss", ((self.net(x) - y) ** 2).mean())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=self.momentum)
        if self.scheduler is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        interval = "step" if self.scheduler == "step-interval" else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def epoch_lrs(self):
        """The learning rate of each epoch's first batch."""
        return [lr for _, batch_idx, lr, _ in self.steps if batch_idx == 0]


def averaging_loader():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def averaging_fit(tmp, callback, module=None, max_epochs=5, val=False, **flags):
    """Fit `module` (an AvgModule) with `callback` on the 4-batch data; return (module, trainer)."""
    module = module if module is not None else AvgModule()
    trainer = quiet_trainer(tmp, callbacks=[callback], max_epochs=max_epochs, num_sanity_val_steps=0,
                            limit_val_batches=1.0 if val else 0, **flags)
    trainer.fit(module, averaging_loader(), averaging_loader() if val else None)
    return module, trainer


def assert_weights(module, expected, atol=1e-5):
    """`expected`: {name: (first values, sum)} of the module's state_dict, as recorded from Lightning."""
    state = module.state_dict()
    assert sorted(state) == sorted(expected)
    for name, (head, total) in expected.items():
        values = state[name].detach().float().flatten()
        assert values[: len(head)].tolist() == pytest.approx(head, abs=atol), name
        assert float(values.sum()) == pytest.approx(total, abs=1e-4), name


# -- signature probes ------------------------------------------------------------------------------------------


def _swa_lrs(tmp):
    module, _ = averaging_fit(tmp, StochasticWeightAveraging(swa_lrs=0.02, swa_epoch_start=2, annealing_epochs=1))
    return module.epoch_lrs()[-1] == pytest.approx(0.02) and raises(
        MisconfigurationException, "2 values", lambda: averaging_fit(tmp, StochasticWeightAveraging([0.1, 0.2])))


def _swa_lrs_per_epoch(tmp, **options):
    options = {"swa_lrs": 0.05, "swa_epoch_start": 2, "annealing_epochs": 2, **options}
    return averaging_fit(tmp, StochasticWeightAveraging(**options))[0].epoch_lrs()


def _swa_avg_fn(tmp):
    seen = []

    def latest(averaged, current, count):
        seen.append(int(count))
        return current

    averaging_fit(tmp, StochasticWeightAveraging(0.05, swa_epoch_start=2, avg_fn=latest))
    # The first update (epoch 1) copies; epochs 2, 3 and 4 start by averaging each of the 4 parameters.
    return seen == [1] * 4 + [2] * 4 + [3] * 4


def _swa_device(tmp):
    seen = []

    def record(averaged, current, count):
        seen.append(averaged.device.type)
        return averaged + (current - averaged) / (count + 1)

    # On "meta" the average holds no values: moving it back into the module at the end fails.
    return raises(NotImplementedError, "meta", lambda: averaging_fit(
        tmp, StochasticWeightAveraging(0.05, swa_epoch_start=2, avg_fn=record, device="meta"))) and seen[0] == "meta"


SWA = {
    "swa_lrs": _swa_lrs,
    "swa_epoch_start": lambda tmp: _swa_lrs_per_epoch(tmp, swa_epoch_start=4) == [0.1, 0.1, 0.1, 0.1, 0.075],
    "annealing_epochs": lambda tmp: _swa_lrs_per_epoch(tmp, annealing_epochs=1) == [0.1, 0.1, 0.05, 0.05, 0.05],
    "annealing_strategy": lambda tmp: _swa_lrs_per_epoch(tmp, annealing_strategy="linear", annealing_epochs=3)
    == pytest.approx([0.1, 0.1, 0.08333333, 0.06666667, 0.05]),
    "avg_fn": _swa_avg_fn,
    "device": _swa_device,
}


def _saved_n_averaged(tmp, callback, module=None, max_epochs=2):
    _, trainer = averaging_fit(tmp, callback, module, max_epochs=max_epochs)
    trainer.save_checkpoint(tmp / "after.ckpt")
    return int(torch.load(tmp / "after.ckpt", weights_only=False)["averaging_state"]["n_averaged"])


def _meta_device_fails(tmp, make):
    # The average on "meta" holds no values: AveragedModel's first update cannot read its counter.
    return raises(RuntimeError, "meta", lambda: averaging_fit(tmp, make(device="meta"), max_epochs=1))


def _running_var_sum(tmp, callback):
    module, _ = averaging_fit(tmp, callback, AvgModule(bn=True), max_epochs=2)
    return float(module.net[1].running_var.sum())


def _use_buffers(tmp, make):
    """The BatchNorm statistics the module ends with differ once buffers are not averaged."""
    return abs(_running_var_sum(tmp, make()) - _running_var_sum(tmp, make(use_buffers=False))) > 1e-3


def _latest(averaged, current, count):
    return current


def _trained_sum(tmp, callback):
    return float(averaging_fit(tmp, callback, max_epochs=2)[0].net[0].weight.detach().sum())


WEIGHT_AVERAGING = {
    "device": lambda tmp: _meta_device_fails(tmp, WeightAveraging),
    "use_buffers": lambda tmp: _use_buffers(tmp, WeightAveraging),
    # avg_fn reaches AveragedModel: "keep the latest" makes the average the trained weights (-2.00639 in Lightning).
    "kwargs": lambda tmp: _trained_sum(tmp, WeightAveraging(avg_fn=_latest)) == pytest.approx(
        _trained_sum(tmp, EMAWeightAveraging(decay=0.0))),
}

EMA = {
    "device": lambda tmp: _meta_device_fails(tmp, EMAWeightAveraging),
    "use_buffers": lambda tmp: _use_buffers(tmp, EMAWeightAveraging),
    "decay": lambda tmp: _trained_sum(tmp, EMAWeightAveraging(decay=0.5)) != pytest.approx(
        _trained_sum(tmp, EMAWeightAveraging())),
    "update_every_n_steps": lambda tmp: _saved_n_averaged(tmp, EMAWeightAveraging(update_every_n_steps=3)) == 3,
    "update_starting_at_step": lambda tmp: _saved_n_averaged(tmp, EMAWeightAveraging(update_starting_at_step=5)) == 3,
    "update_starting_at_epoch": lambda tmp: _saved_n_averaged(
        tmp, EMAWeightAveraging(update_every_n_steps=0, update_starting_at_epoch=0)) == 2,
    "kwargs": lambda tmp: raises(TypeError, "bogus", lambda: averaging_fit(tmp, EMAWeightAveraging(bogus=1))),
}
