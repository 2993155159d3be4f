"""StochasticWeightAveraging through `Trainer.fit`, against values recorded from Lightning 2.6.6.

The expected numbers come from the same model, data and seeds run with `lightning.pytorch` (scripts in the
change's notes): final weights (first values and sum per tensor), the learning rate of each epoch, optimizer
steps, training_step calls, logged values and the callback's checkpoint state.
"""

import logging

import pytest
import torch
from torch.optim.swa_utils import SWALR
from torch.utils.data import DataLoader, IterableDataset

from fulmen.callbacks import ModelCheckpoint, StochasticWeightAveraging
from fulmen.loggers import Logger
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.averaging_probes import AvgModule, assert_weights, averaging_fit, averaging_loader
from helpers.tiny import quiet_trainer


class RecordingLogger(Logger):
    def __init__(self):
        super().__init__()
        self.logged = []

    @property
    def name(self):
        return "rec"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, {key: round(float(value), 6) for key, value in metrics.items()}))


def swa(**options):
    return StochasticWeightAveraging(**{"swa_lrs": 0.05, "swa_epoch_start": 2, "annealing_epochs": 2, **options})


def logged_fit(tmp_path, callback, module, **flags):
    logger = RecordingLogger()
    module, trainer = averaging_fit(tmp_path, callback, module, logger=logger, log_every_n_steps=1, **flags)
    return module, trainer, logger.logged


# -- what fit does, as Lightning ------------------------------------------------------------------------------


def test_averages_the_epochs_from_swa_start_and_anneals_the_lr(tmp_path):
    callback = swa()
    module, trainer, logged = logged_fit(tmp_path, callback, AvgModule(log=True))
    assert_weights(module, {
        "net.0.weight": ([-0.012654, 0.291828, -0.383825], -0.54041),
        "net.0.bias": ([-0.321989, -0.219154, -0.340882], -0.90361),
        "net.2.weight": ([0.143216, -0.194189, 0.067047], -0.37017),
        "net.2.bias": ([-0.290858], -0.29086),
    })
    # SWALR takes over at epoch 1 (swa_epoch_start=2 counts from 1) and anneals over 2 epochs.
    assert module.epoch_lrs() == [0.1, 0.1, 0.075, 0.05, 0.05]
    assert (trainer.global_step, len(module.steps), trainer.current_epoch) == (20, 20, 5)
    assert int(callback.n_averaged) == 4  # epochs 1..4 start with an update
    assert [type(config.scheduler) for config in trainer.lr_scheduler_configs] == [SWALR]
    assert logged[-1] == (19, {"train_loss_epoch": 0.449955, "epoch": 4.0})
    state = callback.state_dict()
    assert sorted(state) == ["average_model_state", "latest_update_epoch", "n_averaged", "scheduler_state"]
    assert (state["n_averaged"], state["latest_update_epoch"]) == (4, 4)
    assert (state["scheduler_state"]["_step_count"], state["scheduler_state"]["last_epoch"]) == (5, 10)


BN_WEIGHTS = {
    "net.0.weight": ([-0.026916, 0.26511, -0.397103], -0.82244),
    "net.0.bias": ([-0.32409, -0.230166, -0.34932], -0.76848),
    "net.1.weight": ([0.981479, 1.00652, 1.015087], 7.94951),
    "net.1.bias": ([-0.030705, -0.003467, -0.008167], -0.05329),
    "net.1.running_mean": ([-0.075097, -0.436996, -0.318263], -0.75146),
    "net.1.running_var": ([0.514954, 0.257093, 0.042007], 2.20175),
    "net.1.num_batches_tracked": ([4], 4),
    "net.3.weight": ([0.146815, -0.237543, 0.291737], -0.40173),
    "net.3.bias": ([-0.194104], -0.1941),
}


class CountsBackward(AvgModule):
    def __init__(self, **options):
        super().__init__(**options)
        self.backward_epochs = []

    def on_after_backward(self):
        self.backward_epochs.append(self.current_epoch)


def test_batchnorm_gets_one_forward_only_epoch_after_the_last(tmp_path):
    callback = swa()
    module, trainer, logged = logged_fit(tmp_path, callback, CountsBackward(bn=True, log=True))
    backward_calls = module.backward_epochs
    # The statistics are recomputed over one pass (4 batches, cumulative average); Lightning's one optimizer step
    # at the end of that pass re-applies the last SWA epoch's gradients, hence weights a little off the average.
    assert_weights(module, BN_WEIGHTS)
    assert module.net[1].momentum == 0.1  # given back after the pass
    assert module.epoch_lrs() == [0.1, 0.1, 0.075, 0.05, 0.05, 0.05]
    assert module.steps[-4:] == [(5, 0, 0.05, 20), (5, 1, 0.05, 20), (5, 2, 0.05, 20), (5, 3, 0.05, 20)]
    assert (trainer.global_step, len(module.steps), trainer.current_epoch) == (21, 24, 6)
    assert len(backward_calls) == 20 and 5 not in backward_calls
    assert logged[-2:] == [(20, {"train_loss_step": 0.039575, "epoch": 5.0}),
                           (20, {"train_loss_epoch": 0.263382, "epoch": 5.0})]
    assert trainer.fit_loop.max_epochs == 5 and trainer.fit_loop.accumulate == 1  # restored after fit
    assert callback.state_dict()["scheduler_state"]["last_epoch"] == 12  # SWALR built with the extended max_epochs


def test_batchnorm_epoch_with_momentum_and_accumulation(tmp_path):
    module, trainer = averaging_fit(tmp_path, swa(), AvgModule(bn=True, momentum=0.9), accumulate_grad_batches=3)
    assert_weights(module, {
        "net.0.weight": ([-0.037028, 0.259123, -0.402603], -1.02507),
        "net.0.bias": ([-0.32409, -0.230166, -0.34932], -0.76848),
        "net.1.weight": ([1.005147, 1.009751, 1.02904], 7.99585),
        "net.1.bias": ([-0.006268, 0.003248, 0.013622], 0.03966),
        "net.1.running_mean": ([-0.074122, -0.432708, -0.325979], -0.73265),
        "net.1.running_var": ([0.52134, 0.25009, 0.055915], 2.22445),
        "net.1.num_batches_tracked": ([4], 4),
        "net.3.weight": ([0.201918, -0.235452, 0.323748], -0.29565),
        "net.3.bias": ([-0.187901], -0.1879),
    })
    assert (trainer.global_step, len(module.steps)) == (11, 24)
    assert [step[3] for step in module.steps[-4:]] == [10, 10, 10, 10]


def test_linear_annealing(tmp_path):
    module, _ = averaging_fit(tmp_path, swa(annealing_strategy="linear", annealing_epochs=3), AvgModule(bn=True))
    assert module.epoch_lrs() == pytest.approx([0.1, 0.1, 0.08333333, 0.06666667, 0.05, 0.05])
    assert_weights(module, {
        "net.0.weight": ([-0.034179, 0.269144, -0.389731], -0.83266),
        "net.0.bias": ([-0.32409, -0.230166, -0.34932], -0.76848),
        "net.1.weight": ([0.977895, 1.005778, 1.010084], 7.94757),
        "net.1.bias": ([-0.032529, -0.006431, -0.009944], -0.05595),
        "net.1.running_mean": ([-0.075348, -0.437269, -0.317235], -0.74946),
        "net.1.running_var": ([0.514656, 0.257501, 0.0418], 2.20684),
        "net.1.num_batches_tracked": ([4], 4),
        "net.3.weight": ([0.135597, -0.23598, 0.281402], -0.4442),
        "net.3.bias": ([-0.19427], -0.19427),
    })


def test_configured_scheduler_is_swapped_for_swalr(tmp_path):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("fulmen").addHandler(handler)
    try:
        module, trainer = averaging_fit(tmp_path, swa(), AvgModule(scheduler="step"))
    finally:
        logging.getLogger("fulmen").removeHandler(handler)
    assert any("Swapping scheduler `StepLR` for `SWALR`" in record.getMessage() for record in records)
    assert module.epoch_lrs() == [0.1, 0.05, 0.05, 0.05, 0.05]  # StepLR halved once, then SWALR anneals to 0.05
    assert [type(config.scheduler) for config in trainer.lr_scheduler_configs] == [SWALR]
    assert_weights(module, {
        "net.0.weight": ([-0.009372, 0.283166, -0.39352], -0.6108),
        "net.0.bias": ([-0.323145, -0.220748, -0.342308], -0.87769),
        "net.2.weight": ([0.121533, -0.192837, 0.066067], -0.40549),
        "net.2.bias": ([-0.278502], -0.2785),
    })


def test_a_per_step_scheduler_warns_that_swa_steps_per_epoch(tmp_path):
    with pytest.warns(UserWarning, match="every epoch"):
        averaging_fit(tmp_path, swa(), AvgModule(scheduler="step-interval"))


class SnapshotsLastEpochStart(AvgModule):
    def on_train_epoch_start(self):
        if self.current_epoch == 4:
            self.snapshot = [parameter.detach().clone() for parameter in self.parameters()]


def test_custom_avg_fn_replaces_the_equal_average(tmp_path):
    module, _ = averaging_fit(tmp_path, swa(avg_fn=lambda average, current, count: current),
                              SnapshotsLastEpochStart())
    # "Keep the latest": the module ends with the weights epoch 4 started from (those epoch 3 ended with).
    for final, started in zip(module.parameters(), module.snapshot):
        torch.testing.assert_close(final.detach(), started)


# -- resuming ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bn", "scheduler"), [(False, None), (True, None), (False, "step"), (True, "step")])
def test_resuming_mid_swa_gives_the_uninterrupted_result(tmp_path, bn, scheduler):
    def run(ckpt_path=None):
        module = AvgModule(bn=bn, momentum=0.9, scheduler=scheduler)
        callbacks = [swa(annealing_epochs=3)]
        if ckpt_path is None:
            callbacks.append(ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, filename="{epoch}"))
        trainer = quiet_trainer(tmp_path, callbacks=callbacks, max_epochs=6, num_sanity_val_steps=0,
                                limit_val_batches=0)
        trainer.fit(module, averaging_loader(), ckpt_path=ckpt_path)
        return module, trainer

    uninterrupted, trainer = run()
    checkpoint = torch.load(tmp_path / "epoch=2.ckpt", weights_only=False)
    state = checkpoint["callbacks"]["StochasticWeightAveraging"]
    assert (state["n_averaged"], state["latest_update_epoch"]) == (2, 2)
    assert state["scheduler_state"]["_step_count"] == 3
    assert state["scheduler_state"]["last_epoch"] == (10 if bn else 9)
    assert len(checkpoint["lr_schedulers"]) == 1 and "anneal_epochs" in checkpoint["lr_schedulers"][0]
    assert sorted(state["average_model_state"]) == sorted(uninterrupted.state_dict())

    resumed, trainer_resumed = run(tmp_path / "epoch=2.ckpt")
    expected_lrs = [0.05, 0.05, 0.05] if scheduler else [0.0625, 0.05, 0.05]  # Lightning's, epochs 3, 4, 5
    assert resumed.epoch_lrs()[:3] == pytest.approx(expected_lrs)
    assert trainer_resumed.global_step == trainer.global_step == (25 if bn else 24)
    for name, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)


def test_starting_late_without_checkpoint_state_warns(tmp_path):
    # A checkpoint written without the callback, at the end of epoch 2: SWA (from epoch 1) starts late.
    first = quiet_trainer(tmp_path, max_epochs=3, num_sanity_val_steps=0, limit_val_batches=0)
    first.fit(AvgModule(), averaging_loader())
    first.save_checkpoint(tmp_path / "plain.ckpt")
    trainer = quiet_trainer(tmp_path, callbacks=[swa()], max_epochs=5, num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.warns(UserWarning, match="without its state from a checkpoint"):
        trainer.fit(AvgModule(), averaging_loader(), ckpt_path=tmp_path / "plain.ckpt")


# -- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "match"), [
    ({"swa_epoch_start": 0}, "swa_epoch_start=0"),
    ({"swa_epoch_start": 1.5}, "swa_epoch_start=1.5"),
    ({"swa_epoch_start": "1"}, "swa_epoch_start='1'"),
    ({"swa_lrs": 0.0}, "positive float"),
    ({"swa_lrs": 1}, "positive float"),
    ({"swa_lrs": [0.1, -0.1]}, "positive float"),
    ({"swa_lrs": "0.1"}, "positive float"),
    ({"annealing_epochs": -1}, "annealing_epochs=-1"),
    ({"annealing_strategy": "exp"}, "'cos' or 'linear'"),
    ({"avg_fn": 3}, "callable"),
    ({"device": 3}, "torch.device"),
])
def test_invalid_arguments_are_refused(options, match):
    with pytest.raises(MisconfigurationException, match=match):
        swa(**options)


def test_swa_lrs_list_must_match_the_param_groups(tmp_path):
    with pytest.raises(MisconfigurationException, match="2 values but the optimizer has 1 parameter groups"):
        averaging_fit(tmp_path, swa(swa_lrs=[0.05, 0.01]))
    module, _ = averaging_fit(tmp_path, swa(swa_lrs=[0.02]))
    assert module.epoch_lrs()[-1] == pytest.approx(0.02)


class TwoSchedulers(AvgModule):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, 1), torch.optim.lr_scheduler.StepLR(optimizer, 2)]
        return [optimizer], schedulers


class TwoOptimizers(AvgModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.1), torch.optim.SGD(self.net[2].parameters(), lr=0.1)]


def test_more_than_one_optimizer_or_scheduler_is_refused(tmp_path):
    with pytest.raises(MisconfigurationException, match="at most 1 LR scheduler"):
        averaging_fit(tmp_path, swa(), TwoSchedulers())
    with pytest.raises(MisconfigurationException, match="exactly 1 optimizer"):
        averaging_fit(tmp_path, swa(), TwoOptimizers())


def test_fractional_start_needs_finite_max_epochs(tmp_path):
    with pytest.raises(MisconfigurationException, match="max_epochs=-1"):
        averaging_fit(tmp_path, swa(swa_epoch_start=0.5), max_epochs=-1, max_steps=4)


def test_unlimited_epochs_average_until_fit_stops(tmp_path):
    callback = swa()
    module, trainer = averaging_fit(tmp_path, callback, max_epochs=-1, max_steps=14)
    assert_weights(module, {
        "net.0.weight": ([-0.012723, 0.287488, -0.385568], -0.55976),
        "net.0.bias": ([-0.323767, -0.220312, -0.341991], -0.89623),
        "net.2.weight": ([0.127548, -0.192943, 0.065378], -0.39057),
        "net.2.bias": ([-0.284822], -0.28482),
    })
    assert module.epoch_lrs() == [0.1, 0.1, 0.075, 0.05]
    assert (trainer.global_step, int(callback.n_averaged), callback.swa_end) == (14, 3, float("inf"))


def test_fractional_start_is_a_share_of_max_epochs(tmp_path):
    callback = swa(swa_epoch_start=0.6)
    module, _ = averaging_fit(tmp_path, callback)
    assert callback.swa_start == 2 and callback.swa_end == 4  # int(0.6 * 5) = 3, 0-based 2
    assert module.epoch_lrs() == [0.1, 0.1, 0.1, 0.075, 0.05]


class Stream(IterableDataset):
    def __iter__(self):
        yield from averaging_loader().dataset


def test_batchnorm_pass_needs_a_sized_dataloader(tmp_path):
    trainer = quiet_trainer(tmp_path, callbacks=[swa()], max_epochs=2, num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.raises(MisconfigurationException, match="iterable-style"):
        trainer.fit(AvgModule(bn=True), DataLoader(Stream(), batch_size=4))
