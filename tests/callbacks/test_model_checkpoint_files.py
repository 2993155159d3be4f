"""ModelCheckpoint's naming attributes and file helpers: `CHECKPOINT_JOIN_CHAR`, `CHECKPOINT_EQUALS_CHAR`,
`CHECKPOINT_NAME_LAST`, `FILE_EXTENSION`, `STARTING_VERSION` overridden on a subclass, `format_checkpoint_name`'s
`prefix`, `to_yaml`, `file_exists`, `check_monitor_top_k`, `every_n_epochs`, and the exception checkpoint
overwriting a file of its name.

Every expected name and value was observed with Lightning 2.6.6 running the same script on BoringModel.
"""

import os
from datetime import timedelta

import pytest
import torch
import yaml

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.demos.boring_classes import BoringModel


def _trainer(root, callback, **flags):
    defaults = dict(default_root_dir=root, max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                    enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    defaults.update(flags)
    return L.Trainer(**defaults)


class Renamed(ModelCheckpoint):
    FILE_EXTENSION = ".pt"
    CHECKPOINT_NAME_LAST = "final"
    CHECKPOINT_JOIN_CHAR = "_"
    CHECKPOINT_EQUALS_CHAR = ":"
    STARTING_VERSION = 5


def test_subclass_naming_attributes_drive_the_files(tmp_path):
    callback = Renamed(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=1, save_top_k=-1,
                       filename="{epoch}-{step}")
    _trainer(tmp_path, callback, max_epochs=2).fit(BoringModel())
    _trainer(tmp_path, callback).fit(BoringModel())  # again into the same folder: taken names get a version
    assert sorted(os.listdir(tmp_path / "ck")) == ["epoch:0-step:1.pt", "epoch:0-step:1_v5.pt", "epoch:0-step:2.pt",
                                                  "epoch:0-step:2_v5.pt", "epoch:1-step:3.pt", "epoch:1-step:4.pt",
                                                  "final.pt"]
    assert callback.last_model_path == str(tmp_path / "ck" / "final.pt")


def test_default_name_and_prefix_use_the_join_char(tmp_path):
    callback = Renamed(dirpath=tmp_path)
    assert callback.format_checkpoint_name({"epoch": 3, "step": 7}) == str(tmp_path / "epoch:3_step:7.pt")
    assert callback.format_checkpoint_name({"epoch": 3, "step": 7}, prefix="pre") == str(
        tmp_path / "pre_epoch:3_step:7.pt")
    assert callback.format_checkpoint_name({"epoch": 3}, filename="{epoch}", ver=2, prefix="p") == str(
        tmp_path / "p_epoch:3_v2.pt")
    assert ModelCheckpoint(filename="{epoch}").format_checkpoint_name({"epoch": 3}, prefix="pre") == "pre-epoch=3.ckpt"


def test_an_instance_attribute_also_renames(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    callback.CHECKPOINT_NAME_LAST = "{epoch}-last"  # Lightning's documented way to name last checkpoints
    _trainer(tmp_path, callback).fit(BoringModel())
    assert sorted(os.listdir(tmp_path / "ck")) == ["epoch=0-last.ckpt", "epoch=0-step=2.ckpt"]


class Scored(BoringModel):
    def validation_step(self, batch, batch_idx):
        self.log("score", [0.5, 0.25, 0.75][self.current_epoch])


def _scored_fit(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="score", save_top_k=2, filename="{epoch}")
    trainer = _trainer(tmp_path, callback, max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(Scored())
    return callback, trainer


def test_to_yaml_writes_the_best_k_models(tmp_path):
    callback, _ = _scored_fit(tmp_path)
    callback.to_yaml()
    text = (tmp_path / "ck" / "best_k_models.yaml").read_text()
    assert text == f"{tmp_path / 'ck' / 'epoch=0.ckpt'}: 0.5\n{tmp_path / 'ck' / 'epoch=1.ckpt'}: 0.25\n"
    callback.to_yaml(tmp_path / "elsewhere.yaml")
    assert yaml.safe_load((tmp_path / "elsewhere.yaml").read_text()) == yaml.safe_load(text)


def test_to_yaml_without_a_directory_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a `filepath`"):
        ModelCheckpoint().to_yaml()


def test_check_monitor_top_k_and_file_exists(tmp_path):
    callback, trainer = _scored_fit(tmp_path)  # kept: 0.5 and 0.25
    assert callback.check_monitor_top_k(trainer) is False  # no score
    assert callback.check_monitor_top_k(trainer, torch.tensor(0.3)) is True
    assert callback.check_monitor_top_k(trainer, torch.tensor(0.6)) is False
    assert callback.file_exists(callback.best_model_path, trainer) is True
    assert callback.file_exists(tmp_path / "missing.ckpt", trainer) is False


@pytest.mark.parametrize(("options", "expected"), [
    ({}, 1), ({"every_n_epochs": 3}, 3), ({"every_n_epochs": 0}, 0), ({"every_n_train_steps": 3}, 0),
    ({"train_time_interval": timedelta(seconds=1)}, 0),
])
def test_every_n_epochs(options, expected):
    assert ModelCheckpoint(**options).every_n_epochs == expected


class FailingAtStep1(BoringModel):
    def training_step(self, batch, batch_idx):
        if self.global_step == 1:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def test_exception_checkpoint_overwrites_a_file_of_its_name(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "epoch=0-step=1.ckpt").write_text("old")
    callback = ModelCheckpoint(dirpath=tmp_path / "ck", save_on_exception=True)
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(tmp_path, callback, limit_train_batches=4).fit(FailingAtStep1())
    # Lightning 2.6 names it like a regular save, without a version suffix.
    assert os.listdir(tmp_path / "ck") == ["epoch=0-step=1.ckpt"]
    assert torch.load(tmp_path / "ck" / "epoch=0-step=1.ckpt", weights_only=True)["global_step"] == 1
