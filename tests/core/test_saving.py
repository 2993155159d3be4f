"""Hyperparameters in checkpoints, `load_from_checkpoint` for modules and datamodules, and safe loading.

Behaviour checked against Lightning 2.6.6 where the two agree (keys, `hparams_name`, overriding kwargs,
TypeError for a missing ignored argument, RuntimeError for unknown weights). fulmen deliberately differs
in loading safely by default and in leaving out of the checkpoint (with a warning at fit start)
hyperparameters a safe checkpoint cannot hold, which `load_from_checkpoint` then asks for.
"""

import argparse
import enum
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import CSVLogger
from helpers.tiny import RandomDataset, TinyModule, make_loader, quiet_trainer


class Options(TinyModule):
    def __init__(self, lr=0.1, width=4, tag="a"):
        super().__init__(lr=lr)
        self.save_hyperparameters()


class WithNet(TinyModule):
    def __init__(self, net, lr=0.1):
        super().__init__(lr=lr)
        self.save_hyperparameters(ignore=["net"])
        self.layer = net


class FromConfig(TinyModule):
    def __init__(self, conf):
        super().__init__()
        self.save_hyperparameters(conf)
        self.received = conf


class Color(enum.Enum):
    RED = "red"


class PathsAndEnums(TinyModule):
    def __init__(self, root=Path("/data/run"), color=Color.RED, nested=None):
        super().__init__()
        self.save_hyperparameters()


class Unsafe(TinyModule):
    def __init__(self, lr=0.1, activation=None):
        super().__init__(lr=lr)
        self.save_hyperparameters()


class TrustedConfig:
    """A benign object that only `weights_only=False` can load."""

    def __init__(self, depth):
        self.depth = depth


class Malicious:
    """Unpickling this would write a marker file: what an attacker's checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def fit_and_save(tmp_path, model, datamodule=None):
    """Fit one epoch (4 batches) with a ModelCheckpoint; return the checkpoint path."""
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback], enable_checkpointing=True,
                            limit_val_batches=0)
    if datamodule is None:
        trainer.fit(model, make_loader(32))
    else:
        trainer.fit(model, datamodule=datamodule)
    return callback.best_model_path


def same_weights(a, b):
    return all(torch.equal(value, b.state_dict()[key]) for key, value in a.state_dict().items())


# -- hyperparameters and load_from_checkpoint ------------------------------------------------------


def test_load_from_checkpoint_reinstantiates_with_saved_hyperparameters(tmp_path):
    model = Options(lr=0.5, tag="b")
    path = fit_and_save(tmp_path, model)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == {"lr": 0.5, "width": 4, "tag": "b"}
    assert checkpoint["hparams_name"] == "kwargs"

    loaded = Options.load_from_checkpoint(path)
    assert dict(loaded.hparams) == {"lr": 0.5, "width": 4, "tag": "b"}
    assert loaded.lr == 0.5
    assert same_weights(loaded, model)
    assert loaded.training  # returned in train mode, as Lightning does


def test_overriding_kwargs_win(tmp_path):
    path = fit_and_save(tmp_path, Options(lr=0.5, tag="b"))
    loaded = Options.load_from_checkpoint(path, tag="c", width=8)
    assert dict(loaded.hparams) == {"lr": 0.5, "width": 8, "tag": "c"}
    assert dict(loaded.hparams_initial) == {"lr": 0.5, "width": 8, "tag": "c"}


def test_ignored_module_argument_must_be_passed_again(tmp_path):
    model = WithNet(nn.Linear(32, 2), lr=0.3)
    path = fit_and_save(tmp_path, model)
    assert torch.load(path, weights_only=True)["hyper_parameters"] == {"lr": 0.3}
    with pytest.raises(TypeError, match="net"):
        WithNet.load_from_checkpoint(path)
    loaded = WithNet.load_from_checkpoint(path, net=nn.Linear(32, 2))
    assert dict(loaded.hparams) == {"lr": 0.3}
    assert same_weights(loaded, model)


@pytest.mark.parametrize("conf", [{"a": 1, "b": [1, 2]}, argparse.Namespace(a=1, b="x")], ids=["dict", "namespace"])
def test_single_container_argument_round_trips(tmp_path, conf):
    path = fit_and_save(tmp_path, FromConfig(conf))
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hparams_name"] == "conf"
    assert checkpoint["hyper_parameters"] == dict(vars(conf) if isinstance(conf, argparse.Namespace) else conf)
    loaded = FromConfig.load_from_checkpoint(path)
    assert type(loaded.received) is type(conf)  # noqa: E721 -- a Namespace comes back as a Namespace
    assert loaded.received == conf
    assert dict(loaded.hparams) == checkpoint["hyper_parameters"]


def test_paths_and_enums_are_stored_as_plain_values(tmp_path):
    path = fit_and_save(tmp_path, PathsAndEnums(nested={"dirs": (Path("/a"), Path("/b")), "colors": [Color.RED]}))
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == {"root": "/data/run", "color": "red",
                                              "nested": {"dirs": ("/a", "/b"), "colors": ["red"]}}
    assert PathsAndEnums.load_from_checkpoint(path).hparams.root == "/data/run"


# -- hyperparameters a safe checkpoint cannot hold: the run goes on, the checkpoint leaves them out -----


class WithBackbone(L.LightningModule):
    """A ported script's pattern: a backbone module passed in, and `save_hyperparameters()` of everything."""

    def __init__(self, backbone: nn.Module, lr=1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = backbone
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        x, y = batch
        return nn.functional.cross_entropy(self.backbone(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class WithOptimizerClass(TinyModule):
    """The other ported pattern: an optimizer class as a hyperparameter."""

    def __init__(self, optimizer_cls=torch.optim.Adam, lr=0.01):
        super().__init__(lr=lr)
        self.save_hyperparameters()

    def configure_optimizers(self):
        return self.hparams.optimizer_cls(self.parameters(), lr=self.hparams.lr)


def _left_out_warnings(record):
    return [str(warning.message) for warning in record if "are not plain values" in str(warning.message)]


def test_module_hyperparameter_is_left_out_of_the_checkpoint_and_asked_for_when_loading(tmp_path):
    with pytest.warns(UserWarning, match=r"'backbone' is an instance of `nn.Module`"):  # as Lightning warns
        model = WithBackbone(nn.Linear(32, 2), lr=0.05)
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpts")],
                            enable_checkpointing=True, limit_val_batches=0, logger=CSVLogger(tmp_path))
    with pytest.warns(UserWarning) as record:
        trainer.fit(model, make_loader(32))
    messages = _left_out_warnings(record)
    assert len(messages) == 1
    assert "'backbone' (a torch.nn.modules.linear.Linear)" in messages[0]
    assert "ignore=['backbone']" in messages[0]
    assert model.steps == 4 and model.hparams.backbone is model.backbone  # trained; kept in memory

    path = trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == {"lr": 0.05}
    assert checkpoint["hparams_left_out"] == {"backbone": "a torch.nn.modules.linear.Linear"}
    assert torch.equal(checkpoint["state_dict"]["backbone.weight"], model.backbone.weight)
    assert checkpoint["optimizer_states"] and checkpoint["loops"]["fit_loop"]["global_step"] == 4
    hparams_yaml = yaml.safe_load((Path(trainer.logger.log_dir) / "hparams.yaml").read_text())
    assert hparams_yaml["lr"] == 0.05 and "backbone" in hparams_yaml

    with pytest.raises(TypeError, match=r"'backbone'.*load_from_checkpoint\(path, backbone=\.\.\.\)"):
        WithBackbone.load_from_checkpoint(path)
    loaded = WithBackbone.load_from_checkpoint(path, backbone=nn.Linear(32, 2))
    assert same_weights(loaded, model) and loaded.hparams.lr == 0.05
    # Training resumes from it as well.
    resumed = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    resumed.fit(loaded, make_loader(32), ckpt_path=path)
    assert resumed.global_step == 8 and loaded.steps == 4


def test_class_hyperparameter_is_left_out_and_passed_again_when_loading(tmp_path):
    model = WithOptimizerClass(optimizer_cls=torch.optim.SGD, lr=0.2)
    with pytest.warns(UserWarning, match=r"'optimizer_cls' \(the class torch\.optim\.sgd\.SGD\)"):
        path = fit_and_save(tmp_path, model)
    assert model.calls["training_step"] == 4
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == {"lr": 0.2}
    assert checkpoint["hparams_left_out"] == {"optimizer_cls": "the class torch.optim.sgd.SGD"}
    with pytest.raises(TypeError, match=r"'optimizer_cls'.*optimizer_cls=\.\.\."):
        WithOptimizerClass.load_from_checkpoint(path)  # its default (Adam) would silently differ
    loaded = WithOptimizerClass.load_from_checkpoint(path, optimizer_cls=torch.optim.SGD)
    assert loaded.hparams.optimizer_cls is torch.optim.SGD and same_weights(loaded, model)


@pytest.mark.parametrize("value, kind", [(lambda x: x, "the function"), (TrustedConfig(3), "TrustedConfig")])
def test_unsafe_hyperparameter_is_left_out_by_save_checkpoint(tmp_path, value, kind):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(Unsafe(activation=value), make_loader(32))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"] == {"lr": 0.1}
    left_out = checkpoint["hparams_left_out"]
    assert list(left_out) == ["activation"] and kind in left_out["activation"]
    assert Unsafe.load_from_checkpoint(tmp_path / "model.ckpt", activation=value).hparams.activation is value


def test_unsafe_value_inside_a_single_dict_argument(tmp_path):
    model = FromConfig({"width": 3, "act": nn.ReLU})
    with pytest.warns(UserWarning, match="'act'"):
        path = fit_and_save(tmp_path, model)
    left_out = torch.load(path, weights_only=True)["hparams_left_out"]
    assert left_out == {"act": "the class torch.nn.modules.activation.ReLU"}
    with pytest.raises(TypeError, match="act=..."):
        FromConfig.load_from_checkpoint(path)
    assert FromConfig.load_from_checkpoint(path, act=nn.ReLU).received == {"width": 3, "act": nn.ReLU}


def test_hparams_file_overrides_the_saved_hyperparameters(tmp_path):
    path = fit_and_save(tmp_path, Options(lr=0.5, tag="b"))
    hparams_file = tmp_path / "hparams.yaml"
    hparams_file.write_text(yaml.safe_dump({"lr": 0.9, "width": 7}))
    loaded = Options.load_from_checkpoint(path, hparams_file=hparams_file)
    assert dict(loaded.hparams) == {"lr": 0.9, "width": 7, "tag": "a"}


def test_a_missing_hparams_file_warns_and_stands_for_no_hyperparameters(tmp_path):
    path = fit_and_save(tmp_path, Options(lr=0.5, tag="b"))
    with pytest.warns(RuntimeWarning, match="Missing Tags: .*nowhere.yaml"):  # Lightning's warning, no error
        loaded = Options.load_from_checkpoint(path, hparams_file=tmp_path / "nowhere.yaml")
    # As in Lightning the file's hyperparameters (none) replace the saved ones: the defaults apply.
    assert dict(loaded.hparams) == {"lr": 0.1, "width": 4, "tag": "a"}


def test_unknown_weights_raise_unless_not_strict(tmp_path):
    path = fit_and_save(tmp_path, Options())

    class Bigger(Options):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.extra = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match="extra.weight"):
        Bigger.load_from_checkpoint(path)
    with pytest.warns(UserWarning, match="extra.weight"):
        loaded = Bigger.load_from_checkpoint(path, strict=False)
    assert torch.equal(loaded.layer.weight, torch.load(path, weights_only=True)["state_dict"]["layer.weight"])


class Data(L.LightningDataModule):
    def __init__(self, batch_size=8, flag="x"):
        super().__init__()
        self.save_hyperparameters()
        self.counter = 0

    def train_dataloader(self):
        return DataLoader(RandomDataset(32), batch_size=self.hparams.batch_size)

    def state_dict(self):
        return {"counter": 5}

    def load_state_dict(self, state_dict):
        self.counter = state_dict["counter"]


class DataFromConfig(Data):
    def __init__(self, conf):
        L.LightningDataModule.__init__(self)
        self.save_hyperparameters(conf)


def test_datamodule_hyperparameters_and_state_round_trip(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(Options(), datamodule=Data(batch_size=4, flag="y"))
    trainer.save_checkpoint(tmp_path / "dm.ckpt")
    checkpoint = torch.load(tmp_path / "dm.ckpt", weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"] == {"batch_size": 4, "flag": "y"}
    assert checkpoint["hyper_parameters"] == {"lr": 0.1, "width": 4, "tag": "a"}
    assert checkpoint["Data"] == {"counter": 5}  # under the datamodule's class qualname

    loaded = Data.load_from_checkpoint(tmp_path / "dm.ckpt")
    assert dict(loaded.hparams) == {"batch_size": 4, "flag": "y"} and loaded.counter == 5
    assert dict(Data.load_from_checkpoint(tmp_path / "dm.ckpt", flag="z").hparams) == {"batch_size": 4, "flag": "z"}
    hparams_file = tmp_path / "dm.yaml"
    hparams_file.write_text(yaml.safe_dump({"batch_size": 16}))
    assert Data.load_from_checkpoint(tmp_path / "dm.ckpt", hparams_file=hparams_file).hparams.batch_size == 16


def test_datamodule_single_dict_argument_round_trips(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(Options(), datamodule=DataFromConfig({"batch_size": 4}))
    trainer.save_checkpoint(tmp_path / "dm.ckpt")
    assert dict(DataFromConfig.load_from_checkpoint(tmp_path / "dm.ckpt").hparams) == {"batch_size": 4}


def test_unsafe_datamodule_hyperparameter_is_left_out_and_asked_for_when_loading(tmp_path):
    with pytest.warns(UserWarning, match=r"LightningDataModule's hyperparameters 'flag'.*ignore=\['flag'\]"):
        path = fit_and_save(tmp_path, Options(), datamodule=Data(flag=TrustedConfig(1)))
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"] == {"batch_size": 8}
    assert list(checkpoint["datamodule_hparams_left_out"]) == ["flag"]
    with pytest.raises(TypeError, match=r"Data's hyperparameter\(s\) 'flag'.*flag=\.\.\."):
        Data.load_from_checkpoint(path)
    flag = TrustedConfig(2)
    loaded = Data.load_from_checkpoint(path, flag=flag)
    assert loaded.hparams.flag is flag and loaded.counter == 5


# -- safe loading ----------------------------------------------------------------------------------


@pytest.fixture
def malicious_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Options().state_dict(), "epoch": 0, "global_step": 0, "payload": Malicious(marker)},
               path)
    return path, marker


@pytest.mark.parametrize("entry", ["load_from_checkpoint", "fit", "validate"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, malicious_checkpoint, entry):
    path, marker = malicious_checkpoint
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)evil\.ckpt.*trust.*weights_only=False"):
        if entry == "load_from_checkpoint":
            Options.load_from_checkpoint(path)
        else:
            trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0 if entry == "fit" else 1.0)
            getattr(trainer, entry)(Options(), make_loader(32), ckpt_path=path)
    assert not marker.exists()


def test_trusted_object_loads_with_weights_only_false(tmp_path):
    model = Options()
    path = tmp_path / "trusted.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"lr": 0.3}, "extra": TrustedConfig(2)}, path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False"):
        Options.load_from_checkpoint(path)
    loaded = Options.load_from_checkpoint(path, weights_only=False)
    assert loaded.hparams.lr == 0.3 and same_weights(loaded, model)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = fit_and_save(tmp_path, Options())
    data = Path(path).read_bytes()
    truncated = tmp_path / "half.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"half\.ckpt.*(corrupt|truncated)"):
        Options.load_from_checkpoint(truncated)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.raises(ValueError, match=r"half\.ckpt"):
        trainer.fit(Options(), make_loader(32), ckpt_path=truncated)


def test_a_saved_non_checkpoint_object_gives_a_clear_error(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match=r"list\.pt.*not a .*checkpoint.*state_dict"):
        Options.load_from_checkpoint(path)


@pytest.mark.parametrize("text", ["hello, this is not a checkpoint\n", "epoch: 3\nstate_dict: {}\n", "lr: 0.1\n"])
def test_a_text_file_gives_a_clear_error(tmp_path, text):
    path = tmp_path / "notes.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"notes\.txt.*checkpoint") as error:
        Options.load_from_checkpoint(path)
    assert "weights_only=False" not in str(error.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        Options.load_from_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(Options(), make_loader(32),
                                                                        ckpt_path=tmp_path / "nope.ckpt")

