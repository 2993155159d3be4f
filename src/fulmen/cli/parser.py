"""`LightningArgumentParser`: jsonargparse's parser taught Lightning's classes, optimizers and schedulers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable, Optional, Union

import torch
from jsonargparse import ArgumentParser, Namespace, class_from_function
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from fulmen.callbacks.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.trainer.trainer import Trainer
from fulmen.utilities.exceptions import MisconfigurationException


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's `ReduceLROnPlateau` that also names the metric it follows (`monitor`), so the CLI can configure it."""

    def __init__(self, optimizer: Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


# As Lightning: the CLI takes this module's ReduceLROnPlateau (it knows its monitor), not torch's own.
LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]

ArgsType = Optional[Union[list[str], dict[str, Any], Namespace]]
OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], Union[LRScheduler, ReduceLROnPlateau]]

_LIGHTNING_CLASSES = (Trainer, LightningModule, LightningDataModule, Callback)


class LightningArgumentParser(ArgumentParser):
    """A jsonargparse `ArgumentParser` (config files, env vars, typed signatures) for fulmen's classes.

    Args:
        description: shown by `--help`.
        env_prefix: prefix of the environment variables read when `default_env=True` (`PL_TRAINER__MAX_EPOCHS`).
        default_env: whether to read arguments from environment variables.
    """

    def __init__(self, *args: Any, description: str = "Lightning Trainer command line tool", env_prefix: str = "PL",
                 default_env: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        self.callback_keys: list[str] = []
        # key -> (class or tuple of classes, link_to): which optimizer/scheduler groups exist and where they go.
        self._optimizers: dict[str, tuple[type | tuple[type, ...], str]] = {}
        self._lr_schedulers: dict[str, tuple[type | tuple[type, ...], str]] = {}

    def add_lightning_class_args(self, lightning_class: Any, nested_key: str, subclass_mode: bool = False,
                                 required: bool = True) -> list[str]:
        """Add the `__init__` arguments of a Trainer, LightningModule, LightningDataModule or Callback (class, or a
        function returning one) under `nested_key`; `subclass_mode` accepts any subclass as `class_path`/`init_args`.
        Returns the names of the added arguments."""
        if callable(lightning_class) and not isinstance(lightning_class, type):
            lightning_class = class_from_function(lightning_class)
        if not (isinstance(lightning_class, type) and issubclass(lightning_class, _LIGHTNING_CLASSES)):
            raise MisconfigurationException(
                f"Cannot add arguments from {lightning_class}: give a subclass of Trainer, LightningModule, "
                "LightningDataModule or Callback, or a function that returns one."
            )
        if issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
        # The Trainer stays a dict of flags: the CLI adds callbacks (SaveConfigCallback, ...) before building it.
        return self.add_class_arguments(lightning_class, nested_key, fail_untyped=False,
                                        instantiate=not issubclass(lightning_class, Trainer), sub_configs=True)

    def add_optimizer_args(self, optimizer_class: type[Optimizer] | tuple[type[Optimizer], ...] = (Optimizer,),
                           nested_key: str = "optimizer", link_to: str = "AUTOMATIC") -> None:
        """Add an optimizer's arguments (all but `params`) under `nested_key`; a tuple of classes allows any of their
        subclasses (`class_path`). `link_to` names where the config goes, or "AUTOMATIC" for `configure_optimizers`."""
        classes = optimizer_class if isinstance(optimizer_class, tuple) else (optimizer_class,)
        if not all(isinstance(c, type) and issubclass(c, Optimizer) for c in classes):
            raise MisconfigurationException(
                f"`add_optimizer_args` takes torch Optimizer classes, got {optimizer_class}.")
        self._add_unbuilt_class(optimizer_class, nested_key, "params")
        self._optimizers[nested_key] = (optimizer_class, link_to)

    def add_lr_scheduler_args(self, lr_scheduler_class: Any = LRSchedulerTypeTuple, nested_key: str = "lr_scheduler",
                              link_to: str = "AUTOMATIC") -> None:
        """Add a learning-rate scheduler's arguments (all but `optimizer`) under `nested_key`; as
        `add_optimizer_args`. `ReduceLROnPlateau` must be `fulmen.cli.ReduceLROnPlateau` (it carries `monitor`)."""
        classes = lr_scheduler_class if isinstance(lr_scheduler_class, tuple) else (lr_scheduler_class,)
        if not all(isinstance(c, type) and issubclass(c, LRSchedulerTypeTuple) for c in classes):
            raise MisconfigurationException(
                f"`add_lr_scheduler_args` takes LRScheduler classes or `fulmen.cli.ReduceLROnPlateau`, got "
                f"{lr_scheduler_class}."
            )
        self._add_unbuilt_class(lr_scheduler_class, nested_key, "optimizer")
        self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

    def _add_unbuilt_class(self, class_type: type | tuple[type, ...], nested_key: str, first_arg: str) -> None:
        # Built later, once the module's parameters (or the optimizer) exist: parse only.
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {first_arg}}
        if isinstance(class_type, tuple):
            self.add_subclass_arguments(class_type, nested_key, **kwargs)
        else:
            self.add_class_arguments(class_type, nested_key, sub_configs=True, **kwargs)


def class_path_of(class_type: type) -> str:
    return f"{class_type.__module__}.{class_type.__name__}"


def with_class_path(class_type: type, init_args: Namespace | dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"class_path": ..., "init_args": ...}` for `class_type`, the form `instantiate_class` takes."""
    if isinstance(init_args, Namespace):
        init_args = init_args.as_dict()
    return {"class_path": class_path_of(class_type), "init_args": init_args or {}}


def instantiate_class(args: Any, init: dict[str, Any]) -> Any:
    """Build `init["class_path"]` with positional `args` (one value or a tuple) and keywords `init["init_args"]`.

    Example: `instantiate_class(model.parameters(), {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}})`.
    """
    if not isinstance(args, tuple):
        args = (args,)
    module_name, _, class_name = init["class_path"].rpartition(".")
    if not module_name:
        raise ValueError(
            f"`class_path` must be a full import path such as 'torch.optim.SGD'; got {init['class_path']!r}.")
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name)(*args, **init.get("init_args", {}))
