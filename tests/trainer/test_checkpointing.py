"""What a checkpoint holds (Lightning's layout), the checkpoint hooks, restoring a run from a file, and
reading checkpoints written by Lightning itself.

Keys, state keys and epoch/step values were observed in checkpoints written by Lightning 2.6.6 for the
same runs (2 epochs of 4 batches).
"""

import os

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.callbacks import EarlyStopping, ModelCheckpoint
from fulmen.precision import Precision
from helpers.tiny import RandomDataset, TinyModule, make_loader, quiet_trainer

FULL_KEYS = {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
             "optimizer_states", "lr_schedulers", "hyper_parameters", "hparams_name"}
MODEL_CHECKPOINT_KEY = ("ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, "
                        "'every_n_epochs': 1, 'train_time_interval': None}")
EARLY_STOPPING_KEY = "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"


class ScheduledModule(TinyModule):
    """TinyModule with saved hyperparameters, a logged val_loss and an epoch StepLR."""

    def __init__(self, lr=0.2, name="x", layers=(1, 2)):
        super().__init__(lr=lr, log_val=True)
        self.save_hyperparameters()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}


def _fit(tmp_path, callbacks=(), max_epochs=2, model=None, **flags):
    trainer = quiet_trainer(tmp_path, callbacks=list(callbacks), max_epochs=max_epochs, num_sanity_val_steps=0,
                            enable_checkpointing=bool(callbacks), **flags)
    trainer.fit(model or ScheduledModule(), make_loader(32), make_loader(32))
    return trainer


def test_model_checkpoint_file_has_lightning_keys_and_values(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True)
    _fit(tmp_path, [callback, EarlyStopping("val_loss")])
    checkpoint = torch.load(callback.last_model_path, weights_only=True)

    assert set(checkpoint) == FULL_KEYS
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 8)  # the epoch just finished
    assert isinstance(checkpoint["pytorch-lightning_version"], str)
    assert checkpoint["hparams_name"] == "kwargs"
    assert checkpoint["hyper_parameters"] == {"lr": 0.2, "name": "x", "layers": (1, 2)}
    assert set(checkpoint["state_dict"]) == {"layer.weight", "layer.bias"}
    assert "fit_loop" in checkpoint["loops"]

    [optimizer_state] = checkpoint["optimizer_states"]
    assert set(optimizer_state) == {"state", "param_groups"}
    [scheduler_state] = checkpoint["lr_schedulers"]
    assert scheduler_state["last_epoch"] == 2 and scheduler_state["base_lrs"] == [0.2]

    assert set(checkpoint["callbacks"]) == {MODEL_CHECKPOINT_KEY, EARLY_STOPPING_KEY}
    checkpoint_state = checkpoint["callbacks"][MODEL_CHECKPOINT_KEY]
    assert set(checkpoint_state) == {"monitor", "best_model_score", "best_model_path", "current_score", "dirpath",
                                     "best_k_models", "kth_best_model_path", "kth_value", "last_model_path"}
    assert checkpoint_state["best_model_path"] == str(tmp_path / "ckpts" / "epoch=1-step=8.ckpt")
    assert checkpoint_state["last_model_path"] == callback.last_model_path
    assert {"wait_count", "stopped_epoch", "best_score", "patience"} <= set(checkpoint["callbacks"][EARLY_STOPPING_KEY])


def test_save_checkpoint_after_fit_stores_the_incremented_epoch(tmp_path):
    trainer = _fit(tmp_path)
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    checkpoint = torch.load(tmp_path / "after.ckpt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 8)


def test_resuming_with_max_epochs_below_the_checkpoints_epoch_raises(tmp_path):
    trainer = _fit(tmp_path, max_epochs=3)
    trainer.save_checkpoint(tmp_path / "epoch3.ckpt")
    module = ScheduledModule()
    with pytest.raises(L.utilities.exceptions.MisconfigurationException,
                       match=r"current_epoch=3, but you have set Trainer\(max_epochs=2\)\. Set `max_epochs` to at least 3"):
        quiet_trainer(tmp_path, max_epochs=2).fit(module, make_loader(32), ckpt_path=tmp_path / "epoch3.ckpt")
    resumed = quiet_trainer(tmp_path, max_epochs=3)  # equal: nothing left to train
    resumed.fit(module, make_loader(32), ckpt_path=tmp_path / "epoch3.ckpt")
    assert (resumed.current_epoch, resumed.global_step) == (3, 12)


def test_weights_only_checkpoint_has_no_training_state(tmp_path):
    trainer = _fit(tmp_path)
    trainer.save_checkpoint(tmp_path / "weights.ckpt", weights_only=True)
    checkpoint = torch.load(tmp_path / "weights.ckpt", weights_only=True)
    assert set(checkpoint) == {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops",
                               "hyper_parameters", "hparams_name"}
    model = ScheduledModule.load_from_checkpoint(tmp_path / "weights.ckpt")
    assert torch.equal(model.layer.weight, trainer.lightning_module.layer.weight)


def test_resume_restores_optimizer_scheduler_and_counters(tmp_path):
    trainer = _fit(tmp_path, max_epochs=1)
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    model = ScheduledModule()
    resumed = quiet_trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0)
    resumed.fit(model, make_loader(32), make_loader(32), ckpt_path=tmp_path / "one.ckpt")
    assert model.calls["training_step"] == 4
    assert (resumed.current_epoch, resumed.global_step) == (2, 8)
    assert resumed.lr_scheduler_configs[0].scheduler.last_epoch == 2
    assert resumed.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.2 * 0.1 ** 2)


class SeesRestoredWeights(ScheduledModule):
    """Records the weights `configure_optimizers` and `on_fit_start` see, and the counters `on_fit_start` sees."""

    def configure_optimizers(self):
        self.seen_by_configure_optimizers = self.layer.weight.detach().clone()
        return super().configure_optimizers()

    def on_fit_start(self):
        self.seen_at_fit_start = (self.layer.weight.detach().clone(), self.trainer.current_epoch,
                                  self.trainer.global_step)


def test_configure_optimizers_sees_the_restored_weights_and_on_fit_start_the_counters_before_restoring(tmp_path):
    # Lightning's order: module weights and callback states before `configure_optimizers`; loop counters,
    # optimizer and scheduler states after `on_fit_start`.
    trainer = _fit(tmp_path, max_epochs=1)
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    saved = trainer.lightning_module.layer.weight.detach().clone()
    model = SeesRestoredWeights()
    assert not torch.equal(model.layer.weight, saved)
    resumed = quiet_trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0)
    resumed.fit(model, make_loader(32), make_loader(32), ckpt_path=tmp_path / "one.ckpt")
    assert torch.equal(model.seen_by_configure_optimizers, saved)
    weight, epoch, step = model.seen_at_fit_start
    assert torch.equal(weight, saved) and (epoch, step) == (0, 0)
    assert (resumed.current_epoch, resumed.global_step) == (2, 8)


def test_64_true_resumes_the_float64_weights_bit_for_bit(tmp_path):
    # The module is float32 until `setup` converts it: weights read before then are read again after it.
    trainer = _fit(tmp_path, max_epochs=1, precision="64-true")
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    saved = trainer.lightning_module.layer.weight.detach().clone()
    assert saved.dtype == torch.float64 and not torch.equal(saved, saved.float().double())
    model = SeesRestoredWeights()
    quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, precision="64-true").fit(
        model, make_loader(32), make_loader(32), ckpt_path=tmp_path / "one.ckpt")
    weight, _, _ = model.seen_at_fit_start
    assert weight.dtype == torch.float64 and torch.equal(weight, saved)


class _Recorder:
    calls = []


class HookedModule(TinyModule):
    validation_step = None  # the datamodule has no validation data

    def on_save_checkpoint(self, checkpoint):
        _Recorder.calls.append("module.on_save_checkpoint")
        checkpoint["module_extra"] = 1

    def on_load_checkpoint(self, checkpoint):
        _Recorder.calls.append(("module.on_load_checkpoint", checkpoint.get("module_extra"),
                                checkpoint.get("callback_extra")))


class HookedDataModule(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(RandomDataset(32), batch_size=8)

    def on_save_checkpoint(self, checkpoint):  # not a datamodule hook since Lightning 2.0: never called
        _Recorder.calls.append("datamodule.on_save_checkpoint")

    def on_load_checkpoint(self, checkpoint):
        _Recorder.calls.append("datamodule.on_load_checkpoint")

    def state_dict(self):
        return {"seen": 3}

    def load_state_dict(self, state_dict):
        _Recorder.calls.append(("datamodule.load_state_dict", state_dict))


class HookedCallback(L.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        _Recorder.calls.append("callback.on_save_checkpoint")
        checkpoint["callback_extra"] = 3

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        _Recorder.calls.append("callback.on_load_checkpoint")

    def state_dict(self):
        return {"count": 5}

    def load_state_dict(self, state_dict):
        _Recorder.calls.append(("callback.load_state_dict", state_dict))


def test_checkpoint_hooks_of_module_datamodule_and_callbacks(tmp_path, monkeypatch):
    monkeypatch.setattr(_Recorder, "calls", [])
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[HookedCallback()])
    trainer.fit(HookedModule(), datamodule=HookedDataModule())
    _Recorder.calls.clear()
    trainer.save_checkpoint(tmp_path / "hooked.ckpt")
    saves = list(_Recorder.calls)
    # Lightning calls the callbacks' hook before the module's; a datamodule has only its state_dict saved
    assert saves.index("callback.on_save_checkpoint") < saves.index("module.on_save_checkpoint")
    assert "datamodule.on_save_checkpoint" not in saves

    checkpoint = torch.load(tmp_path / "hooked.ckpt", weights_only=True)
    assert (checkpoint["module_extra"], checkpoint["callback_extra"]) == (1, 3)
    assert checkpoint["HookedDataModule"] == {"seen": 3}
    assert checkpoint["callbacks"]["HookedCallback"] == {"count": 5}

    _Recorder.calls.clear()
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[HookedCallback()])
    trainer.fit(HookedModule(), datamodule=HookedDataModule(), ckpt_path=tmp_path / "hooked.ckpt")
    loads = [call for call in _Recorder.calls if "save" not in str(call)]
    assert loads[0] == ("module.on_load_checkpoint", 1, 3)  # the module's hook comes first
    assert loads.index("callback.on_load_checkpoint") > 0
    assert "datamodule.on_load_checkpoint" not in loads
    assert ("callback.load_state_dict", {"count": 5}) in loads


def test_fit_with_ckpt_path_restores_the_datamodule_state(tmp_path, monkeypatch):
    monkeypatch.setattr(_Recorder, "calls", [])
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(HookedModule(), datamodule=HookedDataModule())
    trainer.save_checkpoint(tmp_path / "dm.ckpt")
    _Recorder.calls.clear()
    quiet_trainer(tmp_path, max_epochs=2).fit(HookedModule(), datamodule=HookedDataModule(),
                                               ckpt_path=tmp_path / "dm.ckpt")
    assert ("datamodule.load_state_dict", {"seen": 3}) in _Recorder.calls


class CountingPrecision(Precision):
    """A precision plugin with state, like a GradScaler's: counts optimizer steps."""

    def __init__(self):
        self.steps = 0

    def optimizer_step(self, optimizer, model, closure, **kwargs):
        self.steps += 1
        return super().optimizer_step(optimizer, model, closure, **kwargs)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state_dict):
        self.steps = state_dict["steps"]


def test_precision_plugin_state_is_saved_under_its_class_name_and_restored(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, plugins=[CountingPrecision()], limit_val_batches=0)
    trainer.fit(TinyModule(), make_loader(32))
    trainer.save_checkpoint(tmp_path / "precision.ckpt")
    assert torch.load(tmp_path / "precision.ckpt", weights_only=True)["CountingPrecision"] == {"steps": 4}

    plugin = CountingPrecision()
    resumed = quiet_trainer(tmp_path, max_epochs=2, plugins=[plugin], limit_val_batches=0)
    resumed.fit(TinyModule(), make_loader(32), ckpt_path=tmp_path / "precision.ckpt")
    assert plugin.steps == 8


# -- checkpoints written by Lightning ------------------------------------------------------------------


class LightningTrained(TinyModule):
    def __init__(self, lr=0.05, hidden=3, name="tiny", sizes=(1, 2), opts=None):
        super().__init__(lr=lr)
        self.save_hyperparameters()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)}


def _progress(current, total, fields=("ready", "started", "processed", "completed")):
    return {"total": dict.fromkeys(fields, total), "current": dict.fromkeys(fields, current)}


def lightning_checkpoint(model, epochs_done=2, batches_per_epoch=4):
    """The dict Lightning 2.6.6 writes from ModelCheckpoint at the end of epoch `epochs_done - 1` (layout and
    value types copied from a real one: SGD with momentum, StepLR, ModelCheckpoint + EarlyStopping)."""
    steps = epochs_done * batches_per_epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    for _ in range(epochs_done):
        optimizer.step()
        scheduler.step()
    step_fields = ("ready", "completed")
    epoch_counts = {"ready": epochs_done, "started": epochs_done, "processed": epochs_done,
                    "completed": epochs_done - 1}
    fit_loop = {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": steps},
        "epoch_loop.batch_progress": {**_progress(batches_per_epoch, steps), "is_last_batch": True},
        "epoch_loop.scheduler_progress": _progress(1, epochs_done, step_fields),
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {"optimizer": {
            "step": _progress(batches_per_epoch, steps, step_fields),
            "zero_grad": _progress(batches_per_epoch, steps, ("ready", "started", "completed"))}},
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": _progress(0, 0, step_fields),
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.batch_progress": {**_progress(4, 4), "is_last_batch": True},
        "epoch_progress": {"total": dict(epoch_counts), "current": dict(epoch_counts)},
    }
    idle = {"state_dict": {}, "batch_progress": {**_progress(0, 0), "is_last_batch": False}}
    best = "/runs/checkpoints/pl.ckpt"
    return {
        "epoch": epochs_done - 1,
        "global_step": steps,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": model.state_dict(),
        "loops": {"fit_loop": fit_loop, "validate_loop": dict(idle), "test_loop": dict(idle),
                  "predict_loop": {"state_dict": {}, "batch_progress": _progress(0, 0)}},
        "callbacks": {
            "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}": {
                "wait_count": 0, "stopped_epoch": 0, "best_score": torch.tensor(0.5284), "patience": 3,
                "stopping_reason": 0, "stopping_reason_message": None},
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None}": {
                "monitor": "val_loss", "best_model_score": torch.tensor(0.5284), "best_model_path": best,
                "current_score": torch.tensor(0.5284), "dirpath": "/runs/checkpoints",
                "best_k_models": {best: torch.tensor(0.5284)}, "kth_best_model_path": best,
                "kth_value": torch.tensor(0.5284), "last_model_path": ""},
        },
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 0.05, "hidden": 3, "name": "tiny", "sizes": (1, 2),
                             "opts": {"a": [1, 2.5], "b": None}},
    }


def _same_weights(a, b):
    return all(torch.equal(value, b.state_dict()[key]) for key, value in a.state_dict().items())


def test_load_from_a_lightning_checkpoint(tmp_path):
    trained = LightningTrained(hidden=5)
    path = tmp_path / "pl.ckpt"
    torch.save(lightning_checkpoint(trained), path)

    loaded = LightningTrained.load_from_checkpoint(path)
    assert dict(loaded.hparams) == {"lr": 0.05, "hidden": 3, "name": "tiny", "sizes": (1, 2),
                                    "opts": {"a": [1, 2.5], "b": None}}
    assert _same_weights(loaded, trained)

    model = LightningTrained()
    quiet_trainer(tmp_path).validate(model, make_loader(32), ckpt_path=path)
    assert _same_weights(model, trained)


def test_fit_resumes_from_a_lightning_checkpoint(tmp_path):
    path = tmp_path / "pl.ckpt"
    torch.save(lightning_checkpoint(LightningTrained()), path)
    model = LightningTrained()
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    trainer.fit(model, make_loader(32), ckpt_path=path)
    assert model.calls["training_step"] == 4
    assert (trainer.current_epoch, trainer.global_step) == (3, 12)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.5 ** 3)


def test_a_ckpt_path_set_on_the_trainer_is_loaded_by_every_later_run_until_a_run_passes_its_own(tmp_path):
    first = _fit(tmp_path, max_epochs=1)
    first.save_checkpoint(tmp_path / "one.ckpt")
    trainer = quiet_trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0)
    trainer.ckpt_path = tmp_path / "one.ckpt"
    assert trainer.ckpt_path == tmp_path / "one.ckpt"
    trainer.fit(ScheduledModule(), make_loader(32))
    assert trainer.global_step == 8  # resumed after epoch 1's 4 steps
    trainer.test(ScheduledModule(), make_loader(32), verbose=False)
    assert os.fspath(trainer.ckpt_path) == os.fspath(tmp_path / "one.ckpt")  # still loaded: the user manages it
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    with pytest.warns(UserWarning, match="`trainer.ckpt_path = .*one.ckpt'\\)` was called but then you passed "
                                         "`trainer.test\\(ckpt_path=.*two.ckpt'\\)\\)`. The latter will be loaded."):
        trainer.test(ScheduledModule(), make_loader(32), ckpt_path=tmp_path / "two.ckpt", verbose=False)
    trainer.test(ScheduledModule(), make_loader(32), verbose=False)
    assert trainer.ckpt_path is None  # the run's own path replaced the set one, as in Lightning


def test_test_without_a_model_or_a_checkpoint_callback_raises(tmp_path):
    trainer = _fit(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match=r"`.test\(ckpt_path=None\)` was called without a model. The best model of "
                                         r"the previous `fit` call will be used"):
        with pytest.raises(ValueError, match=r'`.test\(ckpt_path="best"\)` is set but `ModelCheckpoint` is not '
                                             r"configured. Pass a model, or a checkpoint file path."):
            trainer.test(dataloaders=make_loader(32))


def test_resuming_without_a_callback_whose_state_the_checkpoint_holds_warns(tmp_path):
    trainer = _fit(tmp_path, callbacks=[EarlyStopping("val_loss")], max_epochs=1)
    trainer.save_checkpoint(tmp_path / "with_es.ckpt")
    with pytest.warns(UserWarning, match=r"callbacks used to create the checkpoint need to be provided during "
                                         r"`Trainer` instantiation. Please add the following callbacks: "
                                         r"\[\"EarlyStopping\{'monitor': 'val_loss', 'mode': 'min'\}\", \"ModelCheckpoint"):
        quiet_trainer(tmp_path, max_epochs=2).fit(ScheduledModule(), make_loader(32),
                                                  ckpt_path=tmp_path / "with_es.ckpt")
