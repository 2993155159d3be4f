"""Upgrading old Lightning checkpoint dicts, and reading classes pickled under Lightning's package names.

The expected dicts are what Lightning 2.6.6's `migrate_checkpoint` returns for the same inputs (checked in a
scratch venv), except the version stamp: fulmen records the layout version it reads, 2.6.0.
"""

import io
import pickle
import sys
import types

import pytest
import torch

import fulmen as L
from fulmen.callbacks import EarlyStopping, ModelCheckpoint
from fulmen.utilities.migration import migrate_checkpoint, pl_legacy_patch
from fulmen.utilities.parsing import AttributeDict
from fulmen.utilities.warnings import PossibleUserWarning

OLD_MC_KEY = ("ModelCheckpoint{'monitor': 'x', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
              "'train_time_interval': None, 'save_on_train_epoch_end': True}")
NEW_MC_KEY = ("ModelCheckpoint{'monitor': 'x', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
              "'train_time_interval': None}")


def test_a_1_5_checkpoint_gets_every_later_upgrade():
    checkpoint = {"pytorch-lightning_version": "1.5.0", "epoch": 3, "global_step": 30, "state_dict": {},
                  "callbacks": {OLD_MC_KEY: {"best_model_score": 1}}, "amp_scaling_state": {"a": 1},
                  "loops": {"validate_loop": {"dataloader_progress": {}, "epoch_loop.batch_progress": {"x": 1},
                                              "epoch_loop.state_dict": {}}}}
    with pytest.warns(UserWarning, match="apex"):
        migrated, applied = migrate_checkpoint(checkpoint)
    assert migrated is checkpoint  # in place
    assert applied == {
        "1.6.0": ["_migrate_loop_global_step_to_progress_tracking", "_migrate_loop_current_epoch_to_progress_tracking"],
        "1.6.5": ["_migrate_loop_batches_that_stepped"],
        "1.9.0": ["_migrate_model_checkpoint_save_on_train_epoch_end_default"],
        "2.0.0": ["_drop_apex_amp_state", "_migrate_loop_structure_after_tbptt_removal",
                  "_migrate_loop_structure_after_optimizer_loop_removal",
                  "_migrate_loop_structure_after_dataloader_loop_removal"],
    }
    assert migrated["pytorch-lightning_version"] == "2.6.0"
    assert migrated["legacy_pytorch-lightning_version"] == "1.5.0"
    assert migrated["callbacks"] == {NEW_MC_KEY: {"best_model_score": 1}}
    assert "amp_scaling_state" not in migrated
    fit_loop = migrated["loops"]["fit_loop"]
    assert fit_loop["epoch_progress"]["current"]["completed"] == 3
    # As Lightning: the 1.6.0 initial loop state already holds 0, so the 1.6.5 default (global_step) is not used.
    assert fit_loop["epoch_loop.state_dict"] == {"_batches_that_stepped": 0}
    assert fit_loop["epoch_loop.automatic_optimization.optim_progress"] == {
        "optimizer": {"step": {"current": {"completed": 0, "ready": 0}, "total": {"completed": 30, "ready": 0}},
                      "zero_grad": {"current": {"completed": 0, "ready": 0, "started": 0},
                                    "total": {"completed": 0, "ready": 0, "started": 0}}}}
    assert fit_loop["epoch_loop.manual_optimization.optim_step_progress"]["total"]["completed"] == 30
    assert not any("batch_loop" in key for key in fit_loop)
    assert migrated["loops"]["validate_loop"] == {"batch_progress": {"x": 1}, "state_dict": {}}


def test_pre_0_10_callback_keys_move_under_the_callback_class():
    checkpoint = {"pytorch-lightning_version": "0.9.0", "epoch": 1, "global_step": 5, "state_dict": {},
                  "checkpoint_callback_best_model_score": 0.5, "early_stop_callback_wait": 2}
    # As in Lightning: the class-keyed states then make the 1.9 key upgrade give up, with a warning.
    with pytest.warns(PossibleUserWarning, match="colliding"):
        migrated, applied = migrate_checkpoint(checkpoint)
    assert migrated["callbacks"] == {ModelCheckpoint: {"best_model_score": 0.5}, EarlyStopping: {"wait_count": 2}}
    assert "checkpoint_callback_best_model_score" not in migrated and list(applied)[0] == "0.10.0"


def test_target_version_stops_the_upgrades_there():
    checkpoint = {"pytorch-lightning_version": "1.8.6", "epoch": 1, "global_step": 5, "state_dict": {},
                  "loops": {"fit_loop": {"epoch_loop.state_dict": {"_batches_that_stepped": 4},
                                         "epoch_loop.batch_loop.optimizer_loop.state_dict": {}}}}
    migrated, applied = migrate_checkpoint(checkpoint, target_version="1.9.0")
    assert applied == {"1.9.0": ["_migrate_model_checkpoint_save_on_train_epoch_end_default"]}
    assert "epoch_loop.batch_loop.optimizer_loop.state_dict" in migrated["loops"]["fit_loop"]
    _, applied = migrate_checkpoint(migrated)  # recorded as 2.6.0 now: nothing left to do
    assert applied == {}


def test_pre_releases_come_before_their_release():
    checkpoint = {"pytorch-lightning_version": "1.6.0rc1", "epoch": 1, "global_step": 5, "state_dict": {}}
    _, applied = migrate_checkpoint(checkpoint)
    assert list(applied) == ["1.6.0", "1.6.5", "1.9.0", "2.0.0"]


def test_current_and_newer_checkpoints_are_left_alone():
    current = {"pytorch-lightning_version": "2.6.6", "state_dict": {}}
    assert migrate_checkpoint(current) == ({"pytorch-lightning_version": "2.6.6", "state_dict": {}}, {})
    newer = {"pytorch-lightning_version": "3.0.0", "state_dict": {}}
    with pytest.warns(PossibleUserWarning, match="newer"):
        assert migrate_checkpoint(newer) == ({"pytorch-lightning_version": "3.0.0", "state_dict": {}}, {})


def test_a_checkpoint_without_a_version_gets_a_clear_error():
    with pytest.raises(KeyError, match="pytorch-lightning_version"):
        migrate_checkpoint({"state_dict": {}})


def test_fulmen_checkpoints_need_no_upgrade(tmp_path):
    from fulmen.demos import BoringModel

    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(BoringModel())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    before = repr(checkpoint)
    assert migrate_checkpoint(checkpoint)[1] == {} and repr(checkpoint) == before


def _pickle_under(module_name: str, cls_name: str, value) -> bytes:
    """Pickle `value` (a dict subclass instance) as if its class lived at `module_name.cls_name`."""
    fake = types.ModuleType(module_name)
    cls = type(cls_name, (dict,), {"__module__": module_name})
    setattr(fake, cls_name, cls)
    parents = module_name.split(".")
    added = [".".join(parents[:i]) for i in range(1, len(parents) + 1) if ".".join(parents[:i]) not in sys.modules]
    for name in added:
        sys.modules[name] = fake if name == module_name else types.ModuleType(name)
    try:
        buffer = io.BytesIO()
        torch.save({"hyper_parameters": cls(value)}, buffer)  # the zip format checkpoints have
        return buffer.getvalue()
    finally:
        for name in added:
            del sys.modules[name]


@pytest.mark.parametrize("module", ["pytorch_lightning.utilities.parsing", "lightning.fabric.utilities.data"])
def test_pl_legacy_patch_reads_lightning_classes_as_fulmens(tmp_path, module):
    data = _pickle_under(module, "AttributeDict", {"lr": 0.1})
    path = tmp_path / "old.ckpt"
    path.write_bytes(data)
    with pytest.raises(ModuleNotFoundError):
        torch.load(path, weights_only=False)
    with pl_legacy_patch():
        loaded = torch.load(path, weights_only=False)
    assert type(loaded["hyper_parameters"]) is AttributeDict and loaded["hyper_parameters"].lr == 0.1
    assert pickle.Unpickler is not None and "Redirecting" not in pickle.Unpickler.__name__


def test_pl_legacy_patch_provides_removed_helpers_only_while_active():
    from fulmen.utilities import enums

    with pl_legacy_patch():
        from fulmen.utilities.argparse_utils import _gpus_arg_default

        assert _gpus_arg_default(3) == 3
        assert enums._FaultTolerantMode("automatic") == "automatic"
    assert not hasattr(enums, "_FaultTolerantMode") and "fulmen.utilities.argparse_utils" not in sys.modules


def test_pl_legacy_patch_names_a_lightning_class_fulmen_lacks():
    data = _pickle_under("pytorch_lightning.callbacks.nowhere", "Gone", {})
    with pl_legacy_patch(), pytest.raises(pickle.UnpicklingError, match="pytorch_lightning.callbacks.nowhere.Gone"):
        torch.load(io.BytesIO(data), weights_only=False)


class Recorded(L.LightningModule):
    def __init__(self, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 2)

    def on_load_checkpoint(self, checkpoint):
        self.seen = checkpoint


def test_load_from_checkpoint_upgrades_an_old_lightning_checkpoint(tmp_path, caplog):
    path = tmp_path / "old.ckpt"
    torch.save({"pytorch-lightning_version": "1.5.10", "epoch": 2, "global_step": 20, "hyper_parameters": {"lr": 0.3},
                "state_dict": Recorded().state_dict(), "callbacks": {OLD_MC_KEY: {"best_model_score": 1.0}}}, path)
    with caplog.at_level("INFO"):
        model = Recorded.load_from_checkpoint(path)
    assert model.hparams.lr == 0.3
    assert model.seen["legacy_pytorch-lightning_version"] == "1.5.10"
    assert model.seen["callbacks"] == {NEW_MC_KEY: {"best_model_score": 1.0}}
    assert model.seen["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 2
    assert "written by Lightning v1.5.10" in caplog.text
    assert torch.load(path, weights_only=True)["pytorch-lightning_version"] == "1.5.10"  # the file is unchanged


def test_load_from_checkpoint_with_weights_only_false_reads_lightning_pickled_hparams(tmp_path):
    state = Recorded().state_dict()
    fake = types.ModuleType("pytorch_lightning.utilities.parsing")
    cls = type("AttributeDict", (dict,), {"__module__": fake.__name__})
    fake.AttributeDict = cls
    names = ["pytorch_lightning", "pytorch_lightning.utilities", fake.__name__]
    for name in names:
        sys.modules[name] = fake if name == fake.__name__ else types.ModuleType(name)
    try:
        torch.save({"pytorch-lightning_version": "1.9.0", "epoch": 0, "global_step": 0, "state_dict": state,
                    "hyper_parameters": cls(lr=0.7)}, tmp_path / "pickled.ckpt")
    finally:
        for name in names:
            del sys.modules[name]
    model = Recorded.load_from_checkpoint(tmp_path / "pickled.ckpt", weights_only=False)
    assert model.hparams.lr == 0.7 and type(model.seen["hyper_parameters"]) is AttributeDict


def test_an_old_checkpoint_missing_what_its_version_had_gets_a_clear_error(tmp_path):
    path = tmp_path / "broken.ckpt"
    torch.save({"pytorch-lightning_version": "1.5.0", "state_dict": Recorded().state_dict()}, path)
    with pytest.raises(ValueError, match="written by Lightning v1.5.0, but it lacks the entry 'global_step'"):
        Recorded.load_from_checkpoint(path)
