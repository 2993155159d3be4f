"""`fulmen.utilities.parsing`: picklability checks and the attribute lookups tuner-style code uses.

Behaviour (which holder wins, what is set where) was compared with Lightning 2.6.6 on the same script.
"""

import inspect

import pytest
import torch

import fulmen as L
import fulmen.utilities
from fulmen.core.hparams import AttributeDict as CoreAttributeDict
from fulmen.demos.boring_classes import BoringDataModule, BoringModel
from fulmen.utilities.parsing import (
    AttributeDict,
    clean_namespace,
    collect_init_args,
    get_init_args,
    is_picklable,
    lightning_getattr,
    lightning_hasattr,
    lightning_setattr,
    parse_class_init_keys,
)


def test_attribute_dict_is_the_hparams_container():
    assert AttributeDict is CoreAttributeDict is fulmen.utilities.AttributeDict
    model = ModelWithHparams()
    assert isinstance(model.hparams, AttributeDict)
    hparams = AttributeDict({"key1": 1})
    hparams.key2 = "abc"
    assert hparams == {"key1": 1, "key2": "abc"} and hparams.key1 == 1
    with pytest.raises(AttributeError):
        hparams.missing


def test_is_picklable():
    assert is_picklable(1) and is_picklable({"a": [1, 2]}) and is_picklable(torch.nn.Linear(1, 1))
    assert not is_picklable(lambda: 1)
    assert fulmen.utilities.is_picklable is is_picklable


def test_clean_namespace_drops_unpicklable_entries_with_a_warning():
    hparams = {"lr": 0.1, "fn": lambda: 2}
    with pytest.warns(UserWarning, match=r"Attribute 'fn' removed from hparams .*ignore=\['fn'\]"):
        clean_namespace(hparams)
    assert hparams == {"lr": 0.1}


def test_parse_class_init_keys():
    class WithEverything:
        def __init__(self, hparams, *my_args, anykw=42, **my_kwargs):
            pass

    class Plain:
        def __init__(me, a):  # noqa: N805
            pass

    assert parse_class_init_keys(WithEverything) == ("self", "my_args", "my_kwargs")
    assert parse_class_init_keys(Plain) == ("me", None, None)


class ModelWithHparams(BoringModel):
    def __init__(self, learning_rate=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.lr = 0.5


class DataWithHparams(BoringDataModule):
    def __init__(self, batch_size=4):
        super().__init__()
        self.save_hyperparameters()


def test_lightning_attribute_helpers_search_module_hparams_and_datamodule():
    model, datamodule = ModelWithHparams(), DataWithHparams()
    assert lightning_hasattr(model, "learning_rate") and lightning_hasattr(model, "lr")
    assert not lightning_hasattr(model, "batch_size")  # no trainer yet, so no datamodule

    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    assert lightning_hasattr(model, "batch_size")
    assert lightning_getattr(model, "learning_rate") == 0.1 and lightning_getattr(model, "lr") == 0.5
    datamodule.batch_size = 7
    assert lightning_getattr(model, "batch_size") == 4  # the last holder (the datamodule's hparams) wins

    lightning_setattr(model, "batch_size", 9)
    assert datamodule.batch_size == 9 and datamodule.hparams.batch_size == 9
    lightning_setattr(model, "learning_rate", 0.3)
    assert model.hparams.learning_rate == 0.3 and not hasattr(model, "learning_rate")


def test_lightning_attribute_helpers_raise_for_unknown_names():
    model = ModelWithHparams()
    for call in (lambda: lightning_getattr(model, "nope"), lambda: lightning_setattr(model, "nope", 1)):
        with pytest.raises(AttributeError, match="nope is neither stored in the model namespace"):
            call()


class RecordsInitArgs:
    seen = {}

    def __init__(self, a, *args, b=2, **kwargs):
        super().__init__()
        frame = inspect.currentframe()
        self.seen.update(get=get_init_args(frame), collect=collect_init_args(frame, []),
                         only_child=collect_init_args(frame, [], classes=(ChildRecordsInitArgs,)),
                         other=collect_init_args(frame, [], classes=(int,)))


class ChildRecordsInitArgs(RecordsInitArgs):
    def __init__(self, c, d=4, **extra):
        super().__init__(c * 10, 5, 6, b=d, z=9)


class BuildsAChild:
    def __init__(self, q):
        super().__init__()
        self.child = ChildRecordsInitArgs(q)


def test_get_init_args_and_collect_init_args_walk_the_constructor_chain():
    BuildsAChild(7)
    seen = RecordsInitArgs.seen
    assert seen["get"] == {"a": 70, "b": 4, "z": 9}  # **kwargs merged in; self and *args left out
    # Innermost constructor first, the outermost call last; values as that constructor received them.
    assert seen["collect"] == [{"a": 70, "b": 4, "z": 9}, {"c": 7, "d": 4}, {"q": 7}]
    assert seen["only_child"] == [{"a": 70, "b": 4, "z": 9}, {"c": 7, "d": 4}]
    assert seen["other"] == []


def test_get_init_args_is_empty_outside_a_class_init():
    class WithoutSuper:
        def __init__(self, x):
            self.args = get_init_args(inspect.currentframe())

    assert WithoutSuper(1).args == {}  # no `__class__` cell: Lightning reads only `__init__`s that use super()
    assert get_init_args(inspect.currentframe()) == {}
