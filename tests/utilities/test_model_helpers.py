"""`utilities.model_helpers`: torchvision models by name (torchvision faked: it is optional), `is_overridden`."""

import sys
import types

import pytest
from torch import nn

import fulmen as L
from fulmen.demos import BoringModel
from fulmen.utilities.model_helpers import get_torchvision_model, is_overridden


def install_fake_torchvision(monkeypatch, models):
    torchvision = types.ModuleType("torchvision")
    torchvision.models = models
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


def test_get_torchvision_model_builds_by_name(monkeypatch):
    calls = []
    models = types.ModuleType("torchvision.models")

    def get_model(name, **kwargs):
        calls.append((name, kwargs))
        return nn.Linear(2, 3)

    models.get_model = get_model
    install_fake_torchvision(monkeypatch, models)
    model = get_torchvision_model("resnet18", weights=None, num_classes=3)
    assert isinstance(model, nn.Linear) and calls == [("resnet18", {"weights": None, "num_classes": 3})]


def test_get_torchvision_model_with_torchvision_before_0_14(monkeypatch):
    models = types.ModuleType("torchvision.models")
    models.resnet18 = lambda **kwargs: nn.Linear(1, kwargs["num_classes"])
    install_fake_torchvision(monkeypatch, models)
    assert get_torchvision_model("resnet18", num_classes=4).out_features == 4
    with pytest.raises(ValueError, match="no model 'nope'"):
        get_torchvision_model("nope")


def test_get_torchvision_model_without_torchvision_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # an import of it fails
    with pytest.raises(ModuleNotFoundError, match="pip install torchvision"):
        get_torchvision_model("resnet18")


def test_is_overridden():
    class Custom(BoringModel):
        def on_train_start(self):
            pass

    assert is_overridden("training_step", BoringModel())
    assert not is_overridden("on_train_start", BoringModel())
    assert is_overridden("on_train_start", Custom())
    assert is_overridden("on_train_start", Custom(), parent=BoringModel)
    assert not is_overridden("setup", L.Callback())
    assert not is_overridden("training_step", None)
    with pytest.raises(ValueError, match="Expected a parent"):
        is_overridden("forward", nn.Linear(1, 1))
