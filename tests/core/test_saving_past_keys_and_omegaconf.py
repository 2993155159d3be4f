"""`core.saving`: hyperparameters under Lightning's pre-0.8 checkpoint keys, and `use_omegaconf` for the
hparams YAML helpers (checked against Lightning 2.6.6 with omegaconf 2.4 installed in a scratch venv)."""

import importlib.util
from argparse import Namespace

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.core.saving import CHECKPOINT_PAST_HPARAMS_KEYS, load_hparams_from_yaml, save_hparams_to_yaml

HAS_OMEGACONF = importlib.util.find_spec("omegaconf") is not None


class Options(L.LightningModule):
    def __init__(self, lr=0.1, width=4, tag="a"):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(2, 2)


def save_checkpoint(path, **extra):
    torch.save({"state_dict": Options().state_dict(), "pytorch-lightning_version": "0.7.6", "epoch": 1,
                "global_step": 10, **extra}, path)
    return path


def test_past_hparams_keys_are_read_by_load_from_checkpoint(tmp_path):
    assert CHECKPOINT_PAST_HPARAMS_KEYS == ("hparams", "module_arguments")
    path = save_checkpoint(tmp_path / "old.ckpt", hparams={"width": 8, "lr": 0.2}, module_arguments={"tag": "z"},
                           hyper_parameters={"lr": 0.5})
    # Later keys win: hparams, then module_arguments, then hyper_parameters, then the call's arguments.
    assert dict(Options.load_from_checkpoint(path).hparams) == {"lr": 0.5, "width": 8, "tag": "z"}
    assert dict(Options.load_from_checkpoint(path, width=16).hparams) == {"lr": 0.5, "width": 16, "tag": "z"}
    only_past = save_checkpoint(tmp_path / "older.ckpt", hparams={"width": 8})
    assert dict(Options.load_from_checkpoint(only_past).hparams) == {"lr": 0.1, "width": 8, "tag": "a"}


def test_past_hparams_keys_do_not_feed_a_datamodule(tmp_path):
    class Data(L.LightningDataModule):
        def __init__(self, batch_size=4):
            super().__init__()
            self.save_hyperparameters()

    path = tmp_path / "dm.ckpt"
    torch.save({"state_dict": {}, "hparams": {"batch_size": 64}, "datamodule_hyper_parameters": {}}, path)
    assert Data.load_from_checkpoint(path).hparams.batch_size == 4


def test_use_omegaconf_false_reads_and_writes_plain_yaml(tmp_path):
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, Namespace(lr=0.1, nested={"a": [1, 2]}), use_omegaconf=False)
    assert path.read_text() == "lr: 0.1\nnested:\n  a:\n  - 1\n  - 2\n"
    loaded = load_hparams_from_yaml(path, use_omegaconf=False)
    assert type(loaded) is dict and loaded == {"lr": 0.1, "nested": {"a": [1, 2]}}


@pytest.mark.skipif(HAS_OMEGACONF, reason="checks the behaviour without omegaconf")
def test_without_omegaconf_use_omegaconf_changes_nothing(tmp_path):
    # As in Lightning: the flag only matters when omegaconf is installed.
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, {"lr": 0.1}, use_omegaconf=True)
    assert type(load_hparams_from_yaml(path, use_omegaconf=True)) is dict


@pytest.mark.skipif(not HAS_OMEGACONF, reason="omegaconf is an optional package")
def test_with_omegaconf_configs_are_resolved_on_save_and_loaded_as_dictconfig(tmp_path):
    from omegaconf import DictConfig, OmegaConf

    conf = OmegaConf.create({"base": 2, "derived": "${base}", "inner": {"v": "${base}"}})
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, {"lr": 0.1, "conf": conf, "t": (1, 2)})
    assert path.read_text() == "lr: 0.1\nconf:\n  base: 2\n  derived: 2\n  inner:\n    v: 2\nt:\n- 1\n- 2\n"
    assert OmegaConf.is_interpolation(conf, "derived")  # the caller's config is left unresolved
    loaded = load_hparams_from_yaml(path)
    assert isinstance(loaded, DictConfig) and loaded.conf.inner.v == 2
    assert type(load_hparams_from_yaml(path, use_omegaconf=False)) is dict
