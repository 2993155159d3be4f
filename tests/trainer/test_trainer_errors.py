"""Misconfiguration errors: each has the exception type users catch and a message that names the fix."""

import pytest
import torch

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def _fit(tmp_path, module, *loaders, **flags):
    flags.setdefault("max_epochs", 1)
    quiet_trainer(tmp_path, **flags).fit(module, *loaders)


class Bare(L.LightningModule):
    """A module with a layer and nothing else; tests add the methods they need."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(32, 2)

    def forward(self, x):
        return self.layer(x)


# -- the module is missing something --------------------------------------------------------------------


def test_fit_without_training_step(tmp_path):
    class NoTrainingStep(Bare):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(MisconfigurationException, match="training_step"):
        _fit(tmp_path, NoTrainingStep(), make_loader())


def test_fit_without_configure_optimizers(tmp_path):
    class NoOptimizers(Bare):
        def training_step(self, batch, batch_idx):
            return self(batch[0]).sum()

    with pytest.raises(MisconfigurationException, match="configure_optimizers"):
        _fit(tmp_path, NoOptimizers(), make_loader())


def test_fit_without_any_train_dataloader(tmp_path):
    with pytest.raises(MisconfigurationException, match="train_dataloader"):
        _fit(tmp_path, TinyModule())


@pytest.mark.parametrize(("entry", "step"), [("validate", "validation_step"), ("test", "test_step")])
def test_eval_without_its_step_method(tmp_path, entry, step):
    class OnlyTraining(Bare):
        def training_step(self, batch, batch_idx):
            return self(batch[0]).sum()

    with pytest.raises(MisconfigurationException, match=step):
        getattr(quiet_trainer(tmp_path), entry)(OnlyTraining(), make_loader(), verbose=False)


@pytest.mark.parametrize(("entry", "hook"), [
    ("validate", "val_dataloader"), ("test", "test_dataloader"), ("predict", "predict_dataloader")])
def test_eval_without_data(tmp_path, entry, hook):
    with pytest.raises(MisconfigurationException, match=hook):
        getattr(quiet_trainer(tmp_path), entry)(TinyModule())


@pytest.mark.parametrize("removed, replacement", [
    ("training_epoch_end", "on_train_epoch_end"),
    ("validation_epoch_end", "on_validation_epoch_end"),
])
def test_removed_epoch_end_hooks_raise(tmp_path, removed, replacement):
    def old_hook(self, outputs):
        return None

    module = type("OldStyle", (TinyModule,), {removed: old_hook})()
    with pytest.raises(NotImplementedError, match=replacement):
        _fit(tmp_path, module, make_loader())


def test_training_step_dict_without_loss(tmp_path):
    class NoLossKey(TinyModule):
        def training_step(self, batch, batch_idx):
            return {"value": self.loss(batch)}

    with pytest.raises(MisconfigurationException, match="'loss'"):
        _fit(tmp_path, NoLossKey(), make_loader())


def test_training_step_returning_a_string(tmp_path):
    class ReturnsText(TinyModule):
        def training_step(self, batch, batch_idx):
            return "loss"

    with pytest.raises(MisconfigurationException, match="training_step"):
        _fit(tmp_path, ReturnsText(), make_loader())


def test_several_optimizers_under_automatic_optimization(tmp_path):
    class TwoOptimizers(TinyModule):
        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.Adam(self.parameters())]

    with pytest.raises(RuntimeError, match="automatic_optimization = False"):
        _fit(tmp_path, TwoOptimizers(), make_loader())


# -- the wrong objects are passed -----------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["fit", "validate", "test", "predict"])
def test_plain_nn_module_is_rejected(tmp_path, entry):
    with pytest.raises(TypeError, match="LightningModule"):
        getattr(quiet_trainer(tmp_path), entry)(torch.nn.Linear(2, 2), make_loader())


def test_validate_without_a_model_and_no_previous_fit(tmp_path):
    with pytest.raises(TypeError, match="model"):
        quiet_trainer(tmp_path).validate(dataloaders=make_loader())


class DataModule(L.LightningDataModule):
    def train_dataloader(self):
        return make_loader()

    def test_dataloader(self):
        return make_loader()


@pytest.mark.parametrize("entry", ["fit", "test"])
def test_dataloaders_and_datamodule_together(tmp_path, entry):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.raises(MisconfigurationException, match="datamodule"):
        getattr(trainer, entry)(TinyModule(), make_loader(), datamodule=DataModule())


@pytest.mark.parametrize("entry", ["fit", "validate"])
def test_dataloaders_and_datamodule_together_is_refused(tmp_path, entry):
    # whatever the type, both are never silently accepted, and nothing runs
    module = TinyModule()
    with pytest.raises(Exception, match="datamodule"):
        getattr(quiet_trainer(tmp_path, max_epochs=1), entry)(module, make_loader(), datamodule=DataModule())
    assert module.calls == {}


def test_train_dataloader_over_an_empty_dataset_warns_and_trains_nothing(tmp_path):
    module = TinyModule()
    with pytest.warns(UserWarning, match="Total length of `DataLoader` across ranks is zero"):
        _fit(tmp_path, module, make_loader(0))
    assert module.calls["training_step"] == 0  # as Lightning: a warning, not an error


# -- invalid Trainer flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "match"), [
    (dict(max_epochs=-2), "max_epochs"),
    (dict(max_steps=-5), "max_steps"),
    (dict(limit_val_batches=1.5), "limit_val_batches"),
    (dict(limit_train_batches=-1), "limit_train_batches"),
    (dict(limit_test_batches=2.5), "limit_test_batches"),
    (dict(val_check_interval=1.5), "val_check_interval"),
    (dict(fast_dev_run=-1), "fast_dev_run"),
    (dict(max_time="soon"), "DD:HH:MM:SS"),
    (dict(gradient_clip_algorithm="clip"), "norm"),
])
def test_invalid_flag_values(tmp_path, flags, match):
    with pytest.raises(MisconfigurationException, match=match):
        L.Trainer(default_root_dir=tmp_path, **flags)


def test_a_gradient_clip_val_that_is_not_a_number_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"`gradient_clip_val` should be an int or a float. Got \(1, 2\)."):
        L.Trainer(default_root_dir=tmp_path, gradient_clip_val=(1, 2))


def test_save_checkpoint_before_any_run_names_the_missing_model(tmp_path):
    with pytest.raises(AttributeError, match=r"Saving a checkpoint is only possible if a model is attached to the "
                                             r"Trainer. Did you call `Trainer.save_checkpoint\(\)` before"):
        L.Trainer(default_root_dir=tmp_path, logger=False).save_checkpoint(tmp_path / "x.ckpt")


def test_unknown_accelerator_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="accelerator='foo'"):
        L.Trainer(default_root_dir=tmp_path, accelerator="foo")


def test_unknown_precision_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        L.Trainer(default_root_dir=tmp_path, precision="foo")


def test_unknown_strategy_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="strategy='foo'"):
        L.Trainer(default_root_dir=tmp_path, strategy="foo")


def test_single_device_strategy_with_several_devices_is_refused(tmp_path):
    with pytest.raises(MisconfigurationException, match="strategy='ddp'"):
        L.Trainer(default_root_dir=tmp_path, devices=2, accelerator="cpu", strategy="single_device")


def test_val_check_interval_longer_than_the_epoch(tmp_path):
    with pytest.raises(ValueError, match="check_val_every_n_epoch=None"):
        _fit(tmp_path, TinyModule(), make_loader(32), make_loader(16), val_check_interval=10)


def test_val_check_interval_longer_than_the_epoch_is_fine_across_epochs(tmp_path):
    module = TinyModule()
    _fit(tmp_path, module, make_loader(32), make_loader(16), val_check_interval=10, check_val_every_n_epoch=None,
         max_epochs=3, num_sanity_val_steps=0)
    assert module.calls["validation_step"] == 2  # after the 10th of 12 batches


def test_fraction_of_a_batch_is_refused(tmp_path):
    with pytest.raises(MisconfigurationException, match="limit_train_batches=0.25"):
        _fit(tmp_path, TinyModule(), make_loader(32), limit_train_batches=0.01)
