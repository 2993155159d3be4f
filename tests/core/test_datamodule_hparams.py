"""`save_hyperparameters` on modules and datamodules, `hparams` / `hparams_initial`, and the datamodule
as the data source of a fit."""

import argparse
import copy

import pytest
import torch
from torch import nn

import fulmen as L
from helpers.module_fixtures import LinearModule, quiet_trainer, vector_loader


class _AllArgs(L.LightningModule):
    def __init__(self, lr=0.1, layers=2, name="net"):
        super().__init__()
        self.save_hyperparameters()


def test_save_hyperparameters_without_arguments_saves_every_init_argument():
    model = _AllArgs(lr=0.5, name="other")
    assert dict(model.hparams) == {"lr": 0.5, "layers": 2, "name": "other"}


def test_hparams_attribute_and_item_access():
    model = _AllArgs(lr=0.5)
    assert model.hparams.lr == 0.5
    assert model.hparams["layers"] == 2
    model.hparams.layers = 4
    assert model.hparams["layers"] == 4
    with pytest.raises(AttributeError):
        model.hparams.missing


def test_hparams_initial_is_unaffected_by_later_edits():
    model = _AllArgs(lr=0.5, layers=[1, 2])
    model.hparams.lr = 9.0
    model.hparams.layers.append(3)
    assert model.hparams_initial == {"lr": 0.5, "layers": [1, 2], "name": "net"}
    model.hparams_initial["lr"] = -1
    assert model.hparams_initial.lr == 0.5


def test_subclass_chain_collects_child_and_parent_arguments():
    class Parent(L.LightningModule):
        def __init__(self, p=1, q="x", **kwargs):
            super().__init__()
            self.save_hyperparameters()

    class Child(Parent):
        def __init__(self, c=2, p=3, extra=None):
            super().__init__(p=p, q="from-child")

    assert dict(Child(c=5, p=7).hparams) == {"p": 7, "q": "from-child", "c": 5, "extra": None}


def test_subclass_chain_with_kwargs_forwarding():
    class Parent(L.LightningModule):
        def __init__(self, p=1, q="x", **kwargs):
            super().__init__()
            self.save_hyperparameters()

    class Child(Parent):
        def __init__(self, c=2, **kwargs):
            super().__init__(**kwargs)

    assert dict(Child(c=5, p=7, z=9).hparams) == {"p": 7, "q": "x", "z": 9, "c": 5}


def test_child_argument_wins_over_parent_argument_of_the_same_name():
    class Parent(L.LightningModule):
        def __init__(self, p=1):
            super().__init__()
            self.save_hyperparameters()

    class Child(Parent):
        def __init__(self, p=9):
            super().__init__()

    assert Child(p=7).hparams.p == 7


def test_save_hyperparameters_with_names():
    class Named(L.LightningModule):
        def __init__(self, a, b=2, c=3):
            super().__init__()
            self.save_hyperparameters("a", "c")

    assert dict(Named(1).hparams) == {"a": 1, "c": 3}


def test_save_hyperparameters_with_ignore_list_and_string():
    class Ignoring(L.LightningModule):
        def __init__(self, a, b=2, net=None):
            super().__init__()
            self.save_hyperparameters(ignore=["net"])

    class IgnoringOne(L.LightningModule):
        def __init__(self, a, b=2):
            super().__init__()
            self.save_hyperparameters(ignore="a")

    assert dict(Ignoring(1, net=nn.Linear(2, 2)).hparams) == {"a": 1, "b": 2}
    assert dict(IgnoringOne(1).hparams) == {"b": 2}


def test_save_hyperparameters_keeps_varargs_out_and_kwargs_in():
    class Variadic(L.LightningModule):
        def __init__(self, a, *args, b=2, **kwargs):
            super().__init__()
            self.save_hyperparameters()

    assert dict(Variadic(1, 5, 6, b=3, k=4).hparams) == {"a": 1, "b": 3, "k": 4}


def test_save_hyperparameters_from_a_dict():
    class FromDict(L.LightningModule):
        def __init__(self, config):
            super().__init__()
            self.save_hyperparameters(config)

    config = {"lr": 0.1, "n": 2}
    model = FromDict(config)
    assert dict(model.hparams) == config
    assert model.hparams.lr == 0.1
    config["lr"] = 5.0
    assert model.hparams_initial.lr == 0.1


def test_save_hyperparameters_from_a_namespace():
    class FromNamespace(L.LightningModule):
        def __init__(self, args):
            super().__init__()
            self.save_hyperparameters(args)

    model = FromNamespace(argparse.Namespace(lr=0.1, n=3))
    assert dict(model.hparams) == {"lr": 0.1, "n": 3}
    assert model.hparams.n == 3 and model.hparams["lr"] == 0.1


def test_module_argument_warns_and_suggests_ignore():
    class WithNet(L.LightningModule):
        def __init__(self, a, net_for_warning=None):
            super().__init__()
            self.save_hyperparameters()

    with pytest.warns(UserWarning, match=r"ignore=\['net_for_warning'\]"):
        model = WithNet(1, net_for_warning=nn.Linear(2, 2))
    assert set(model.hparams) == {"a", "net_for_warning"}


def test_hparams_are_empty_without_save_hyperparameters():
    model = L.LightningModule()
    assert dict(model.hparams) == {}
    assert dict(model.hparams_initial) == {}


def test_unknown_name_raises():
    class Wrong(L.LightningModule):
        def __init__(self, a=1):
            super().__init__()
            self.save_hyperparameters("nope")

    # Lightning raises KeyError('nope'); fulmen raises a ValueError naming the real arguments.
    with pytest.raises((KeyError, ValueError), match="nope"):
        Wrong()


# -- LightningDataModule ------------------------------------------------------------------------------


class _Data(L.LightningDataModule):
    def __init__(self, batch_size=4, root="/data"):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return vector_loader(length=16, batch_size=self.hparams.batch_size)


def test_datamodule_save_hyperparameters():
    data = _Data(8)
    assert dict(data.hparams) == {"batch_size": 8, "root": "/data"}
    assert data.hparams.batch_size == 8
    data.hparams.batch_size = 2
    assert data.hparams_initial.batch_size == 8


def test_datamodule_subclass_arguments_are_collected_by_the_parent_call():
    class Child(_Data):
        def __init__(self, extra=1, batch_size=4):
            super().__init__(batch_size=batch_size)

    assert dict(Child(extra=3).hparams) == {"batch_size": 4, "root": "/data", "extra": 3}


def test_child_ignore_removes_hparams_a_parent_already_saved():
    class Child(_Data):
        def __init__(self, extra=1, batch_size=4, secret="s"):
            super().__init__(batch_size=batch_size)
            self.save_hyperparameters(ignore=["secret"])

    child = Child(extra=3)
    assert dict(child.hparams) == {"batch_size": 4, "root": "/data", "extra": 3}
    assert "secret" not in child.hparams_initial


def test_fit_with_datamodule_uses_its_dataloader(tmp_path):
    model = LinearModule()
    trainer = quiet_trainer(tmp_path, limit_train_batches=None)
    data = _Data(batch_size=4)
    trainer.fit(model, datamodule=data)
    assert trainer.num_training_batches == 4
    assert trainer.global_step == 4
    assert data.trainer is trainer and trainer.datamodule is data


def test_datamodule_passed_positionally_to_fit(tmp_path):
    trainer = quiet_trainer(tmp_path, limit_train_batches=None)
    trainer.fit(LinearModule(), _Data(batch_size=8))
    assert trainer.global_step == 2


def test_datamodule_from_datasets(tmp_path):
    from helpers.module_fixtures import VectorDataset

    data = L.LightningDataModule.from_datasets(train_dataset=VectorDataset(12), batch_size=4)
    trainer = quiet_trainer(tmp_path, limit_train_batches=None)
    trainer.fit(LinearModule(), datamodule=data)
    assert trainer.global_step == 3


def test_from_datasets_forwards_arguments_to_the_subclass_init():
    from torch.utils.data import TensorDataset

    data = _Data.from_datasets(train_dataset=TensorDataset(torch.randn(12, 32)), batch_size=6, root="/elsewhere")
    assert dict(data.hparams) == {"batch_size": 6, "root": "/elsewhere"}
    assert len(data.train_dataloader()) == 2


def test_dataloaders_and_datamodule_together_raise(tmp_path):
    with pytest.raises((ValueError, L.utilities.MisconfigurationException)):
        quiet_trainer(tmp_path).fit(LinearModule(), vector_loader(), datamodule=_Data())


def test_hparams_survive_deepcopy():
    model = _AllArgs(lr=0.3)
    clone = copy.deepcopy(model)
    assert clone.hparams == model.hparams and clone.hparams_initial.lr == 0.3


# -- Lightning's datamodule odds: forwarded constructor arguments, renamed checkpoint keys, dropped hparams ----------


class _ForwardingData(L.LightningDataModule):
    def __init__(self, size=16, *args, **kwargs):
        super().__init__(*args, **kwargs)  # Lightning's base accepts (and drops) what a subclass forwards
        self.save_hyperparameters("size")

    def train_dataloader(self):
        return vector_loader(self.hparams.size)


class _RenamedKeys(_ForwardingData):
    CHECKPOINT_HYPER_PARAMS_KEY = "my_data_hparams"
    CHECKPOINT_HYPER_PARAMS_NAME = "my_data_hparams_container"


def test_datamodule_accepts_forwarded_arguments():
    assert _ForwardingData(8, "extra", flag=True).hparams.size == 8


@pytest.mark.parametrize("data_cls", [_ForwardingData, _RenamedKeys])
def test_datamodule_checkpoint_keys_follow_its_class_attributes(tmp_path, data_cls):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(LinearModule(), datamodule=data_cls(size=8))
    path = tmp_path / "dm.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint[data_cls.CHECKPOINT_HYPER_PARAMS_KEY] == {"size": 8}
    assert checkpoint[data_cls.CHECKPOINT_HYPER_PARAMS_NAME] == "kwargs"
    assert data_cls.load_from_checkpoint(path).hparams.size == 8


def test_module_checkpoint_keys_follow_its_class_attributes(tmp_path):
    class Renamed(LinearModule):
        CHECKPOINT_HYPER_PARAMS_KEY = "my_hparams"

        def __init__(self, lr=0.1):
            super().__init__()
            self.save_hyperparameters()

    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(Renamed(lr=0.5), vector_loader(8))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=False)["my_hparams"]["lr"] == 0.5
    assert Renamed.load_from_checkpoint(path).hparams.lr == 0.5


def test_remove_ignored_hparams_drops_what_a_base_class_saved():
    class Child(_AllArgs):
        def __init__(self):
            super().__init__(lr=0.3)
            self.remove_ignored_hparams(["layers", "not_there"])

    model = Child()
    assert dict(model.hparams) == {"lr": 0.3, "name": "net"}
    assert model.hparams_initial["layers"] == 2  # the initial copy keeps them, as in Lightning


def test_a_dataclass_module_saves_its_init_fields_from_post_init():
    import dataclasses

    @dataclasses.dataclass(eq=False)
    class Config(L.LightningModule):
        mandatory: int
        optional: str = "x"
        derived: int = dataclasses.field(init=False, default=0)

        def __post_init__(self):
            super().__init__()
            self.save_hyperparameters()

    assert dict(Config(33).hparams) == {"mandatory": 33, "optional": "x"}


def test_a_module_built_in_another_modules_init_also_gets_its_arguments():
    # Lightning's rule (its tests require it): the frames of every enclosing HyperparametersMixin `__init__` count.
    class Child(L.LightningModule):
        def __init__(self, dropout, init_method):
            super().__init__()
            self.save_hyperparameters(ignore=["dropout"])

    class Parent(L.LightningModule):
        def __init__(self, batch_size):
            super().__init__()
            self.child = Child(dropout=0.1, init_method="xavier")

    class NotAModule:
        def __init__(self, run_id="abc"):
            self.parent = Parent(batch_size=64)

    assert dict(NotAModule().parent.child.hparams) == {"init_method": "xavier", "batch_size": 64}


def test_module_and_datamodule_logging_one_key_with_two_values_raise(tmp_path):
    class Module(LinearModule):
        def __init__(self, batch_size=8):
            super().__init__()
            self.save_hyperparameters()

    class Data(L.LightningDataModule):
        def __init__(self, batch_size=16):
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self):
            return vector_loader()

    trainer = quiet_trainer(tmp_path, logger=L.loggers.CSVLogger(tmp_path))
    with pytest.raises(RuntimeError, match=r"Error while merging hparams: the keys \['batch_size'\] are present in both "
                                           r"the LightningModule's and LightningDataModule's hparams"):
        trainer.fit(Module(), datamodule=Data())
