"""Trainer flags and properties as a user sees them: debug modes, barebones, anomaly detection, state,
counters, the datamodule's hooks, and how an interrupted run ends."""

import os

import pytest
import torch

import fulmen as L
from helpers.tiny import RandomDataset, RecordingCallback, TinyModule, make_loader, quiet_trainer

# -- overfit_batches and fast_dev_run -------------------------------------------------------------------


class FirstBatches(TinyModule):
    """Records the first input of every training batch."""

    def __init__(self):
        super().__init__()
        self.train_firsts = []

    def training_step(self, batch, batch_idx):
        self.train_firsts.append((self.current_epoch, batch_idx, batch[0][0].clone()))
        return super().training_step(batch, batch_idx)


def test_overfit_batches_turns_off_shuffling_and_limits_validation(tmp_path):
    module = FirstBatches()
    dataset_x = RandomDataset(64).x
    trainer = quiet_trainer(tmp_path, max_epochs=3, overfit_batches=2, num_sanity_val_steps=0)
    with pytest.warns(UserWarning):
        trainer.fit(module, make_loader(64, shuffle=True), make_loader(64, seed=3))
    assert trainer.num_training_batches == 2
    assert module.calls["training_step"] == 3 * 2
    # every epoch sees the first two batches of the dataset, in order
    for _, batch_idx, first in module.train_firsts:
        torch.testing.assert_close(first, dataset_x[batch_idx * 8])
    assert module.calls["validation_step"] == 3 * 2
    assert trainer.num_val_batches == [2]


def test_overfit_batches_as_a_fraction(tmp_path):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_epochs=1, overfit_batches=0.25, num_sanity_val_steps=0)
    trainer.fit(module, make_loader(64), make_loader(64, seed=3))
    assert module.calls["training_step"] == 2
    assert module.calls["validation_step"] == 2


@pytest.mark.parametrize(("flag", "batches"), [(True, 1), (3, 3)])
def test_fast_dev_run_runs_n_batches_once_and_writes_no_files(tmp_path, flag, batches):
    recorder = RecordingCallback()
    module = TinyModule(log_val=True)
    # default logger and checkpointing: fast_dev_run must still write nothing
    trainer = L.Trainer(default_root_dir=tmp_path, fast_dev_run=flag, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[recorder])
    trainer.fit(module, make_loader(64), make_loader(64, seed=3))
    assert module.calls["training_step"] == batches
    assert module.calls["validation_step"] == batches
    assert recorder.count("on_sanity_check_start") == 0
    assert trainer.global_step == batches
    assert trainer.current_epoch == 1
    trainer.test(module, make_loader(64), verbose=False)
    assert module.calls["test_step"] == batches
    assert list(tmp_path.iterdir()) == []
    # As in Lightning the default ModelCheckpoint is there, and saves nothing.
    assert type(trainer.checkpoint_callback).__name__ == "ModelCheckpoint"
    assert trainer.checkpoint_callback.best_model_path == ""


def test_fast_dev_run_ignores_max_epochs(tmp_path):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, fast_dev_run=2, max_epochs=10)
    trainer.fit(module, make_loader(64))
    assert module.calls["training_step"] == 2
    assert trainer.current_epoch == 1


# -- barebones, detect_anomaly --------------------------------------------------------------------------


def test_barebones_has_no_progress_bar_summary_logger_or_checkpoint(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, barebones=True, max_epochs=1)
    assert trainer.progress_bar_callback is None
    assert trainer.checkpoint_callback is None
    assert trainer.logger is None and trainer.loggers == []
    assert not any("ModelSummary" in type(cb).__name__ for cb in trainer.callbacks)
    module = TinyModule()
    trainer.fit(module, make_loader(32))
    assert module.calls["training_step"] == 4
    assert list(tmp_path.iterdir()) == []


def test_default_trainer_has_progress_bar_summary_and_logger(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path)
    assert trainer.progress_bar_callback is not None
    assert any("ModelSummary" in type(cb).__name__ for cb in trainer.callbacks)
    assert trainer.logger is not None


@pytest.mark.parametrize("flag", [True, False])
def test_detect_anomaly_sets_anomaly_mode_during_fit(tmp_path, flag):
    class Watch(TinyModule):
        def training_step(self, batch, batch_idx):
            self.calls[f"anomaly={torch.is_anomaly_enabled()}"] += 1
            return super().training_step(batch, batch_idx)

    module = Watch()
    quiet_trainer(tmp_path, max_epochs=1, detect_anomaly=flag).fit(module, make_loader(16))
    assert module.calls[f"anomaly={flag}"] == 2
    assert not torch.is_anomaly_enabled()


# -- state and stage flags ------------------------------------------------------------------------------


class Snapshots(L.Callback):
    def __init__(self):
        self.seen = {}

    def _snap(self, where, trainer):
        state = trainer.state
        self.seen.setdefault(where, (
            state.fn, state.stage, state.status, trainer.training, trainer.validating, trainer.testing,
            trainer.predicting, trainer.sanity_checking,
        ))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._snap("sanity" if trainer.sanity_checking else f"val:{trainer.state.fn.value}", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._snap("train", trainer)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._snap("test", trainer)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._snap("predict", trainer)


def test_state_and_stage_flags_seen_from_hooks(tmp_path):
    snaps = Snapshots()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[snaps], num_sanity_val_steps=1)
    assert trainer.state.status == "initializing"
    trainer.fit(TinyModule(), make_loader(16), make_loader(16))
    trainer.validate(TinyModule(), make_loader(16), verbose=False)
    trainer.test(TinyModule(), make_loader(16), verbose=False)
    trainer.predict(TinyModule(), make_loader(16, targets=False))
    running = "running"
    #                       fn          stage           status   train  val    test   pred   sanity
    assert snaps.seen == {
        "sanity": ("fit", "sanity_check", running, False, False, False, False, True),
        "train": ("fit", "train", running, True, False, False, False, False),
        "val:fit": ("fit", "validate", running, False, True, False, False, False),
        "val:validate": ("validate", "validate", running, False, True, False, False, False),
        "test": ("test", "test", running, False, False, True, False, False),
        "predict": ("predict", "predict", running, False, False, False, True, False),
    }
    assert trainer.state.fn == "predict"
    assert trainer.state.stage is None
    assert trainer.state.status == "finished"
    assert not trainer.training and not trainer.predicting


def test_counters_and_batch_counts_after_fit(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=3)
    module = TinyModule()
    trainer.fit(module, make_loader(40), make_loader(64, seed=3))
    assert trainer.current_epoch == 2 and module.current_epoch == 2
    assert trainer.global_step == 10 and module.global_step == 10
    assert trainer.num_training_batches == 5
    assert trainer.num_val_batches == [3]


def test_single_process_properties(tmp_path):
    trainer = quiet_trainer(tmp_path, accelerator="cpu")
    assert trainer.is_global_zero
    assert trainer.world_size == 1
    assert trainer.global_rank == 0 and trainer.local_rank == 0
    assert os.fspath(trainer.default_root_dir) == str(tmp_path)


def test_lightning_module_and_datamodule_properties(tmp_path):
    dm = L.LightningDataModule.from_datasets(train_dataset=RandomDataset(16), batch_size=8)
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=dm)
    assert trainer.lightning_module is module
    assert trainer.datamodule is dm
    assert module.trainer is trainer
    assert dm.trainer is trainer


@pytest.mark.parametrize(("flags", "expected"), [
    (dict(max_epochs=3), 15),
    (dict(max_epochs=3, accumulate_grad_batches=2), 9),
    (dict(max_epochs=3, max_steps=4), 4),
    (dict(max_epochs=3, limit_train_batches=2), 6),
])
def test_estimated_stepping_batches_after_fit(tmp_path, flags, expected):
    trainer = quiet_trainer(tmp_path, **flags)
    trainer.fit(TinyModule(), make_loader(40))
    assert trainer.estimated_stepping_batches == expected


@pytest.mark.parametrize(("flags", "expected"), [
    (dict(max_epochs=3, max_steps=4), 4),
    (dict(max_epochs=3, accumulate_grad_batches=2), 9),
])
def test_estimated_stepping_batches_in_configure_optimizers(tmp_path, flags, expected):
    # the usual place to read it: sizing a OneCycleLR schedule
    class Reads(TinyModule):
        def configure_optimizers(self):
            self.estimate = self.trainer.estimated_stepping_batches
            return super().configure_optimizers()

    module = Reads()
    quiet_trainer(tmp_path, **flags).fit(module, make_loader(40))
    assert module.estimate == expected


# -- LightningDataModule --------------------------------------------------------------------------------


class TrackingDataModule(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        self.events = []

    def prepare_data(self):
        self.events.append("prepare_data")

    def setup(self, stage):
        self.events.append(f"setup:{getattr(stage, 'value', stage)}")

    def teardown(self, stage):
        self.events.append(f"teardown:{getattr(stage, 'value', stage)}")

    def train_dataloader(self):
        self.events.append("train_dataloader")
        return make_loader(16)

    def val_dataloader(self):
        self.events.append("val_dataloader")
        return make_loader(16, seed=3)

    def test_dataloader(self):
        self.events.append("test_dataloader")
        return make_loader(24)

    def predict_dataloader(self):
        self.events.append("predict_dataloader")
        return make_loader(32, targets=False)


@pytest.mark.parametrize(("entry", "stage", "loader_hook"), [
    ("validate", "validate", "val_dataloader"),
    ("test", "test", "test_dataloader"),
    ("predict", "predict", "predict_dataloader"),
])
def test_datamodule_hooks_get_the_stage_of_the_entry_point(tmp_path, entry, stage, loader_hook):
    dm = TrackingDataModule()
    trainer = quiet_trainer(tmp_path)
    kwargs = {} if entry == "predict" else {"verbose": False}
    getattr(trainer, entry)(TinyModule(), datamodule=dm, **kwargs)
    assert dm.events == ["prepare_data", f"setup:{stage}", loader_hook, f"teardown:{stage}"]


def test_datamodule_hooks_during_fit(tmp_path):
    dm = TrackingDataModule()
    module = TinyModule()
    quiet_trainer(tmp_path, max_epochs=2).fit(module, datamodule=dm)
    assert dm.events == ["prepare_data", "setup:fit", "val_dataloader", "train_dataloader", "teardown:fit"]
    assert module.calls["training_step"] == 4
    assert module.calls["validation_step"] == 2 + 2 * 2  # sanity check + two epochs


def test_datamodule_loaders_win_over_module_hooks(tmp_path):
    class ModuleWithLoaders(TinyModule):
        def test_dataloader(self):
            raise AssertionError("the datamodule's test_dataloader should be used")

    module = ModuleWithLoaders()
    quiet_trainer(tmp_path).test(module, datamodule=TrackingDataModule(), verbose=False)
    assert module.calls["test_step"] == 3


def test_datamodule_can_be_passed_positionally(tmp_path):
    module = TinyModule()
    quiet_trainer(tmp_path, max_epochs=1).fit(module, TrackingDataModule())
    assert module.calls["training_step"] == 2


def test_from_datasets_builds_the_dataloaders(tmp_path):
    dm = L.LightningDataModule.from_datasets(
        train_dataset=RandomDataset(32), val_dataset=RandomDataset(16, seed=3),
        test_dataset=RandomDataset(24), predict_dataset=RandomDataset(40, targets=False), batch_size=8)
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert module.calls["training_step"] == 4
    assert module.calls["validation_step"] == 2
    trainer.test(module, datamodule=dm, verbose=False)
    assert module.calls["test_step"] == 3
    assert len(trainer.predict(module, datamodule=dm)) == 5
    assert dm.train_dataloader().batch_size == 8
    assert dm.train_dataloader().pin_memory and dm.val_dataloader().pin_memory  # as Lightning builds them


# -- interrupted runs -----------------------------------------------------------------------------------


def _failing_module(error_type):
    class Fails(TinyModule):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                raise error_type("stop here")
            return super().training_step(batch, batch_idx)

    return Fails()


def test_keyboard_interrupt_exits_with_code_1_and_marks_the_trainer_interrupted(tmp_path):
    recorder = RecordingCallback()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[recorder])
    with pytest.raises(SystemExit) as info:
        trainer.fit(_failing_module(KeyboardInterrupt), make_loader(32))
    assert info.value.code == 1
    assert trainer.interrupted
    assert trainer.state.status == "interrupted"
    assert trainer.global_step == 1
    assert [type(e) for e in recorder.exceptions] == [KeyboardInterrupt]


def test_keyboard_interrupt_skips_the_teardown_hooks(tmp_path):
    recorder = RecordingCallback()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[recorder])
    with pytest.raises(SystemExit):
        trainer.fit(_failing_module(KeyboardInterrupt), make_loader(32))
    assert recorder.count("teardown:fit") == 0


def test_other_exceptions_propagate_after_on_exception(tmp_path):
    recorder = RecordingCallback()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[recorder])
    with pytest.raises(ValueError, match="stop here"):
        trainer.fit(_failing_module(ValueError), make_loader(32))
    assert trainer.interrupted
    assert trainer.state.status == "interrupted"
    assert trainer.state.stage is None
    assert [type(e) for e in recorder.exceptions] == [ValueError]
    assert recorder.count("teardown:fit") == 0


def test_trainer_can_fit_again_after_an_exception(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.raises(ValueError):
        trainer.fit(_failing_module(ValueError), make_loader(32))
    module = TinyModule()
    trainer.validate(module, make_loader(16), verbose=False)
    assert trainer.state.status == "finished" and not trainer.interrupted
    assert module.calls["validation_step"] == 2


@pytest.mark.parametrize(("flag", "value"), [("model_registry", "my-model")])
def test_flags_without_an_implementation_raise_instead_of_being_ignored(flag, value):
    with pytest.raises(NotImplementedError, match=rf"`Trainer\({flag}=.*not implemented yet"):
        L.Trainer(**{flag: value})
    L.Trainer(**{flag: None}, logger=False)


@pytest.mark.parametrize(("flag", "read_back"), [(False, False), (True, True), (1, True), (3, 3)])
def test_fast_dev_run_reads_back_as_lightning_and_swaps_the_logger_for_a_dummy(tmp_path, flag, read_back):
    from fulmen.loggers.logger import DummyLogger

    trainer = L.Trainer(default_root_dir=tmp_path, fast_dev_run=flag, enable_progress_bar=False)
    assert trainer.fast_dev_run is read_back if isinstance(read_back, bool) else trainer.fast_dev_run == read_back
    if flag:
        assert [type(logger) for logger in trainer.loggers] == [DummyLogger]
        trainer.logger.experiment.add_text("anything", "goes")  # absorbed, as Lightning's DummyLogger does
        trainer.logger.experiment["key"] = 1
    assert L.Trainer(default_root_dir=tmp_path, fast_dev_run=flag, logger=False).loggers == []
