"""LearningRateFinder and BatchSizeFinder as callbacks: they tune when the Trainer call starts, and the call
then runs on as if it had started with the tuned value (checked against Lightning 2.6.6 where it agrees)."""

import os

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.callbacks import BatchSizeFinder, LearningRateFinder
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tuner_probes import OOMModel, RegressionModel, make_trainer, regression_data


def _weights(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_learning_rate_finder_then_trains_at_the_suggestion(tmp_path):
    torch.manual_seed(0)
    model = RegressionModel()
    finder = LearningRateFinder(num_training_steps=20)
    trainer = make_trainer(tmp_path, max_steps=5, callbacks=[finder])
    trainer.fit(model)
    assert model.lr == finder.optimal_lr.suggestion() == pytest.approx(0.0002511886431509582, rel=1e-12)  # Lightning
    assert trainer.optimizers[0].param_groups[0]["lr"] == model.lr
    assert trainer.global_step == 5 and os.listdir(tmp_path) == []
    # The same as training from the start at that learning rate: weights, optimizer and RNG were put back.
    # (Lightning 2.6.6 ends elsewhere: its fit after the finder does not equal its own fit at the suggestion.)
    torch.manual_seed(0)
    reference = RegressionModel(lr=model.lr)
    make_trainer(tmp_path, max_steps=5).fit(reference)
    assert all(torch.equal(value, reference.state_dict()[key]) for key, value in model.state_dict().items())


def test_learning_rate_finder_from_another_hook(tmp_path):
    class AtEpochs(LearningRateFinder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.found = []

        def on_fit_start(self, trainer, pl_module):
            return

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch in (0, 2):
                self.lr_find(trainer, pl_module)
                self.found.append((trainer.current_epoch, trainer.global_step, len(self.optimal_lr.results["lr"])))

    torch.manual_seed(0)
    callback = AtEpochs(num_training_steps=5, early_stop_threshold=None)
    trainer = make_trainer(tmp_path, max_epochs=3, callbacks=[callback])
    trainer.fit(RegressionModel())
    assert callback.found == [(0, 0, 5), (2, 16, 5)]
    assert trainer.global_step == 24 and trainer.current_epoch == 3


def test_learning_rate_finder_rejects_unknown_mode():
    with pytest.raises(ValueError, match=r"`mode` should be either of \('linear', 'exponential'\)"):
        LearningRateFinder(mode="cosine")


def test_batch_size_finder_then_fits_at_the_size_found(tmp_path):
    torch.manual_seed(0)
    model = OOMModel(n=1000)
    finder = BatchSizeFinder()
    trainer = make_trainer(tmp_path, max_steps=2, callbacks=[finder])
    trainer.fit(model)
    assert finder.optimal_batch_size == model.batch_size == 32  # Lightning: 32
    assert model.steps[-2:] == [32, 32] and trainer.global_step == 2
    # Training equals training from the start at that size (Lightning's trials use up random numbers instead).
    torch.manual_seed(0)
    reference = OOMModel(n=1000, batch_size=32)
    make_trainer(tmp_path, max_steps=2).fit(reference)
    assert all(torch.equal(value, reference.state_dict()[key]) for key, value in model.state_dict().items())


def test_batch_size_finder_in_validate_runs_at_the_size_found(tmp_path):
    seen = []

    class Record(L.Callback):
        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.append(batch[0].shape[0])

    torch.manual_seed(0)
    model = OOMModel(n=1000)
    finder = BatchSizeFinder()
    results = make_trainer(tmp_path, callbacks=[finder, Record()], limit_val_batches=2).validate(model, verbose=False)
    # Lightning 2.6.6: size 32 (the 32-sample validation set), one batch of 32, val_loss 17.104724884033203.
    assert finder.optimal_batch_size == 32 and seen == [32]
    assert results[0]["val_loss"] == pytest.approx(17.104724884033203, rel=1e-6)


def test_batch_size_finder_in_test_and_predict(tmp_path):
    class Evaluated(OOMModel):
        def test_step(self, batch, batch_idx):
            return self.validation_step(batch, batch_idx)

        def test_dataloader(self):
            return DataLoader(regression_data(300, 2), batch_size=self.batch_size)

        def predict_step(self, batch, batch_idx):
            if batch[0].shape[0] > self.limit:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 byte.")
            return batch[0].shape[0]

        predict_dataloader = test_dataloader

    model = Evaluated()
    finder = BatchSizeFinder(mode="binsearch", margin=0.0)
    make_trainer(tmp_path, callbacks=[finder]).test(model, verbose=False)
    assert finder.optimal_batch_size == model.batch_size == 40
    model.batch_size = 2
    predictions = make_trainer(tmp_path, callbacks=[finder]).predict(model)
    assert finder.optimal_batch_size == 40
    assert predictions == [40] * 7 + [20]  # the predict call ran at the size found


def test_batch_size_finder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"`mode` should be either of \('power', 'binsearch'\)"):
        BatchSizeFinder(mode="linear")
    with pytest.raises(ValueError, match="`margin` should be between 0 and 1"):
        BatchSizeFinder(margin=-0.1)
    trainer = make_trainer(tmp_path, callbacks=[BatchSizeFinder()])
    with pytest.raises(MisconfigurationException, match="cannot be used with dataloaders passed directly to `.fit"):
        trainer.fit(OOMModel(), train_dataloaders=DataLoader(regression_data(), batch_size=2))

    class TwoLoaders(OOMModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            return super().validation_step(batch, batch_idx)

    several = [DataLoader(regression_data(), batch_size=2), DataLoader(regression_data(), batch_size=2)]
    with pytest.raises(MisconfigurationException, match="cannot be used with multiple val dataloaders"):
        make_trainer(tmp_path, callbacks=[BatchSizeFinder()]).validate(TwoLoaders(), dataloaders=several)
