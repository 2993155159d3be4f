"""Tuner.scale_batch_size: the batch size found and the attribute set match Lightning 2.6.6 (recorded from
/tmp/plvenv on the same setups), out-of-memory is detected from the CPU allocator's message, every trial
requests its dataloaders again, and the model and Trainer come back exactly as they were."""

import os

import pytest
import torch
from torch.utils.data import DataLoader

from fulmen.callbacks import BatchSizeFinder
from fulmen.tuner import Tuner
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tuner_probes import HparamsOOMModel, OOMModel, SizedDataModule, make_trainer, regression_data

# kwargs -> Lightning 2.6.6's result (OOMModel runs out of memory above 40 samples per batch).
RECORDED = {
    "power": ({}, 32),
    "binsearch": ({"mode": "binsearch"}, 38),  # 40, less the 5% margin
    "binsearch_no_margin": ({"mode": "binsearch", "margin": 0.0}, 40),
    "init_3_max_trials_3": ({"init_val": 3, "max_trials": 3}, 12),
    "max_val": ({"max_val": 16}, 16),  # Lightning stops at the cap without trying it
    "validate": ({"method": "validate"}, 32),  # stops at the 32-sample validation set
}


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_scale_batch_size_matches_lightning(case, tmp_path):
    kwargs, expected = RECORDED[case]
    torch.manual_seed(0)
    model = OOMModel(n=1000)
    trainer = make_trainer(tmp_path)
    assert Tuner(trainer).scale_batch_size(model, **kwargs) == expected
    assert model.batch_size == expected
    assert trainer.global_step == 0 and os.listdir(tmp_path) == []


def test_each_trial_requests_its_dataloaders(tmp_path):
    model = OOMModel(n=1000)
    Tuner(make_trainer(tmp_path)).scale_batch_size(model, mode="binsearch")
    trained = [size for stage, size in model.requests if stage == "train"]
    # (Lightning's first trial still runs the loader requested before the size was set to `init_val`.)
    assert trained == [2, 4, 8, 16, 32, 64, 48, 40, 44, 42, 41]


def test_dataset_smaller_than_the_batch_stops_the_search(tmp_path):
    model = OOMModel(n=20)
    assert Tuner(make_trainer(tmp_path)).scale_batch_size(model) == 32  # as Lightning: 32 ran (one batch of 20)


def test_batch_size_in_hparams(tmp_path):
    model = HparamsOOMModel()
    assert Tuner(make_trainer(tmp_path)).scale_batch_size(model) == 32
    assert model.hparams.batch_size == 32 and not hasattr(model, "batch_size")


def test_batch_size_on_the_datamodule(tmp_path):
    model, datamodule = OOMModel(), SizedDataModule()
    del model.batch_size
    assert Tuner(make_trainer(tmp_path)).scale_batch_size(model, datamodule=datamodule) == 32
    assert datamodule.batch_size == 32
    assert [size for stage, size in datamodule.requests if stage == "train"] == [2, 4, 8, 16, 32, 64]


def test_scale_batch_size_leaves_model_and_trainer_as_they_were(tmp_path):
    torch.manual_seed(0)
    model = OOMModel(n=1000)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    trainer = make_trainer(tmp_path, max_steps=4)
    callbacks = list(trainer.callbacks)
    rng = torch.get_rng_state()
    Tuner(trainer).scale_batch_size(model, init_val=8, max_trials=2)
    assert model.batch_size == 16
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)  # (Lightning's trials use up random numbers)
    assert trainer.callbacks == callbacks and (trainer.global_step, trainer.max_steps) == (0, 4)
    assert (trainer.limit_train_batches, trainer.limit_val_batches, trainer.num_sanity_val_steps) == (1.0, 1.0, 2)
    trainer.fit(model)
    torch.manual_seed(0)
    reference = OOMModel(n=1000, batch_size=16)
    make_trainer(tmp_path, max_steps=4).fit(reference)
    assert all(torch.equal(reference.state_dict()[key], value) for key, value in model.state_dict().items())


def test_other_errors_propagate(tmp_path):
    class Broken(OOMModel):
        def training_step(self, batch, batch_idx):
            if batch[0].shape[0] > 4:
                raise RuntimeError("something else")
            return super().training_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match="something else"):
        Tuner(make_trainer(tmp_path)).scale_batch_size(Broken(n=1000))


def test_errors(tmp_path):
    tuner = Tuner(make_trainer(tmp_path))
    with pytest.raises(MisconfigurationException, match="Field bsz not found in `model`, `datamodule`"):
        tuner.scale_batch_size(OOMModel(), batch_arg_name="bsz")
    with pytest.raises(MisconfigurationException, match="cannot be used with dataloaders passed directly"):
        tuner.scale_batch_size(OOMModel(), train_dataloaders=DataLoader(regression_data(), batch_size=2))
    with pytest.raises(ValueError, match="method 'tune' is invalid"):
        tuner.scale_batch_size(OOMModel(), method="tune")
    with pytest.raises(MisconfigurationException, match="`train_dataloaders` and `val_dataloaders` arguments should"):
        tuner.scale_batch_size(OOMModel(), method="test", train_dataloaders=[])
    with pytest.raises(ValueError, match="`margin` should be between 0 and 1"):
        tuner.scale_batch_size(OOMModel(), margin=1.5)
    with pytest.raises(ValueError, match="already configured with a `BatchSizeFinder`"):
        Tuner(make_trainer(tmp_path, callbacks=[BatchSizeFinder()])).scale_batch_size(OOMModel())
    with pytest.warns(UserWarning, match="Skipping batch size scaler since `fast_dev_run`"):
        assert Tuner(make_trainer(tmp_path, fast_dev_run=True)).scale_batch_size(OOMModel()) is None


def test_attribute_and_hparams_both_set_warns(tmp_path):
    class Both(OOMModel):
        def __init__(self, batch_size=2):
            super().__init__(batch_size=batch_size, n=1000)
            self.save_hyperparameters()

    model = Both()
    with pytest.warns(UserWarning, match="are mutually exclusive"):
        Tuner(make_trainer(tmp_path)).scale_batch_size(model)
    assert model.batch_size == model.hparams.batch_size == 32
