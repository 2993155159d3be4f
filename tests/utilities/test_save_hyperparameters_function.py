"""`utilities.parsing.save_hyperparameters`, the function form of `self.save_hyperparameters`, and the
`core.module.MODULE_OPTIMIZERS` alias."""

import typing
from argparse import Namespace
from dataclasses import dataclass, field

import pytest
import torch

import fulmen as L
from fulmen.core.module import MODULE_OPTIMIZERS
from fulmen.core.optimizer import LightningOptimizer
from fulmen.utilities.parsing import save_hyperparameters


class Called(L.LightningModule):
    def __init__(self, lr=0.1, width=4, net=None, *args, **kwargs):
        super().__init__()
        save_hyperparameters(self, ignore="net")


class Named(L.LightningModule):
    def __init__(self, lr=0.1, width=4):
        super().__init__()
        save_hyperparameters(self, "lr")


class Child(Called):
    def __init__(self, depth=2, **kwargs):
        super().__init__(**kwargs)


def test_collects_the_init_arguments_like_the_method():
    model = Called(lr=0.5, extra=3)
    assert dict(model.hparams) == {"lr": 0.5, "width": 4, "extra": 3}
    assert dict(model.hparams_initial) == dict(model.hparams)
    assert dict(Named(lr=0.2).hparams) == {"lr": 0.2}
    assert dict(Child(depth=5, lr=0.3).hparams) == {"depth": 5, "lr": 0.3, "width": 4}


def test_one_container_and_given_hparams():
    class FromConfig(L.LightningModule):
        def __init__(self, conf):
            super().__init__()
            save_hyperparameters(self, conf)

    assert dict(FromConfig(Namespace(a=1)).hparams) == {"a": 1}
    empty = FromConfig({})  # an empty container saves nothing, as Lightning
    assert dict(empty.hparams) == {}

    class Given(L.LightningModule):
        def __init__(self, lr=0.1):
            super().__init__()
            save_hyperparameters(self, given_hparams={"lr": 9.0, "from_cli": True})

    assert dict(Given().hparams) == {"lr": 9.0, "from_cli": True}


def test_dataclass_fields_are_the_arguments():
    @dataclass(eq=False)
    class Data(L.LightningDataModule):
        batch_size: int = 8
        root: str = "data"
        cache: dict = field(default_factory=dict, init=False)

        def __post_init__(self):
            super().__init__()
            save_hyperparameters(self)

    assert dict(Data(batch_size=16).hparams) == {"batch_size": 16, "root": "data"}


def test_a_plain_object_is_refused():
    with pytest.raises(TypeError, match="HyperparametersMixin"):
        save_hyperparameters(object())


def test_module_optimizers_alias_covers_what_optimizers_returns():
    members = typing.get_args(MODULE_OPTIMIZERS)
    assert torch.optim.Optimizer in members and LightningOptimizer in members
    assert list[torch.optim.Optimizer] in members and list[LightningOptimizer] in members


def test_remove_ignored_hparams_drops_names_a_parent_saved():
    model = Called(lr=0.5)
    model.remove_ignored_hparams(["width", "not-there"])
    assert dict(model.hparams) == {"lr": 0.5}
    assert dict(model.hparams_initial) == {"lr": 0.5, "width": 4}  # the record of what was saved stays

    class Subclass(Called):
        def __init__(self, lr=0.1, width=4):
            super().__init__(lr=lr, width=width)
            self.save_hyperparameters(ignore="width")  # drops what the parent saved

    assert dict(Subclass().hparams) == {"lr": 0.1}
