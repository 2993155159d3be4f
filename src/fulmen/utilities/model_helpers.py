"""Model helpers under Lightning's path `utilities.model_helpers`: building torchvision models by name, and
asking whether a LightningModule/DataModule/Callback overrides a method."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["get_torchvision_model", "is_overridden"]


def get_torchvision_model(model_name: str, **kwargs: Any) -> nn.Module:
    """`torchvision.models.get_model(model_name, **kwargs)` (e.g. `"resnet18", weights=None`); torchvision is an
    optional dependency and must be installed."""
    try:
        from torchvision import models
    except ImportError as error:
        raise ModuleNotFoundError(
            f"`get_torchvision_model({model_name!r})` needs torchvision, which is not installed ({error}). "
            "Install it with `pip install torchvision` (the build matching your torch).") from None
    if hasattr(models, "get_model"):  # torchvision >= 0.14
        return models.get_model(model_name, **kwargs)
    builder = getattr(models, model_name, None)
    if builder is None:
        raise ValueError(f"torchvision.models has no model {model_name!r}.")
    return builder(**kwargs)


def is_overridden(method_name: str, instance: object | None = None, parent: type | None = None) -> bool:
    """Whether `instance` replaces `parent.method_name`; `parent` defaults to the fulmen base class `instance` is
    (LightningModule, LightningDataModule or Callback). False for `instance=None`."""
    from fulmen.core.hooks import is_overridden as overrides

    if instance is None:
        return False
    if parent is None:
        from fulmen import Callback, LightningDataModule, LightningModule

        parent = next((base for base in (LightningModule, LightningDataModule, Callback)
                       if isinstance(instance, base)), None)
        if parent is None:
            raise ValueError(f"Expected a parent: {type(instance).__name__} is not a LightningModule, "
                             "LightningDataModule or Callback; pass the class to compare with as `parent=`.")
    if not hasattr(parent, method_name):
        raise ValueError(f"{parent.__name__} has no method {method_name!r} that could be overridden.")
    return overrides(method_name, instance, parent)
