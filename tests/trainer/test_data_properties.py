"""Trainer data properties: `val_check_batch`, `enable_validation`, `overfit_batches`,
`reload_dataloaders_every_n_epochs`, `distributed_sampler_kwargs`. Values observed with Lightning 2.6.6."""

from datetime import timedelta

import pytest

from fulmen.demos.boring_classes import BoringModel
from helpers.tiny import quiet_trainer


@pytest.mark.parametrize(("flags", "val_check_batch", "enabled"), [
    ({}, 4, True),
    (dict(val_check_interval=0.5), 2, True),
    (dict(val_check_interval=3), 3, True),
    (dict(val_check_interval=timedelta(seconds=5)), None, True),
    (dict(limit_val_batches=0), 4, False),
])
def test_val_check_batch_and_enable_validation(tmp_path, flags, val_check_batch, enabled):
    trainer = quiet_trainer(tmp_path, **{"max_epochs": 1, "limit_train_batches": 4, "limit_val_batches": 1, **flags})
    assert (trainer.val_check_batch, trainer.enable_validation) == (None, False)  # nothing set up before fit
    trainer.fit(BoringModel())
    assert (trainer.val_check_batch, trainer.enable_validation) == (val_check_batch, enabled)
    assert (trainer.overfit_batches, trainer.reload_dataloaders_every_n_epochs) == (0.0, 0)
    assert trainer.distributed_sampler_kwargs is None


def test_enable_validation_needs_a_validation_step(tmp_path):
    class NoValidation(BoringModel):
        validation_step = None

    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(NoValidation())
    assert not trainer.enable_validation


def test_flags_read_back(tmp_path):
    trainer = quiet_trainer(tmp_path, overfit_batches=0.1, reload_dataloaders_every_n_epochs=2)
    assert (trainer.overfit_batches, trainer.reload_dataloaders_every_n_epochs) == (0.1, 2)


def test_distributed_sampler_kwargs_under_ddp(tmp_path):
    trainer = quiet_trainer(tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert trainer.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}
