"""How LightningCLI's modules remember their parsed config, so `load_from_checkpoint` can rebuild them."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from jsonargparse import ArgumentParser

from fulmen.core.hparams import given_hyperparameters

ModuleType = TypeVar("ModuleType")


class _Instantiator:
    """Builds the class at config `key` (`model`/`data`) so its `save_hyperparameters()` stores the parsed config."""

    def __init__(self, cli: Any, key: str) -> None:
        self.cli = cli
        self.key = key

    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        self.cli._dump_config()
        hparams = self.cli.config_dump.get(self.key, {})
        if "class_path" in hparams:
            # As Lightning: the same flat hparams in both modes, the class kept under `_class_path`.
            hparams = {"_class_path": hparams["class_path"], **hparams.get("init_args", {}),
                       **hparams.get("dict_kwargs", {})}
        # Values that link_arguments set at instantiation time are not in the dump yet.
        prefix = f"{self.key}."
        for target, value in applied_instantiation_links.items():
            if target.startswith(prefix):
                _set_nested(hparams, target[len(prefix):].removeprefix("init_args."), value)
        with given_hyperparameters(hparams, instantiator="fulmen.cli.instantiate_module"):
            return class_type(*args, **kwargs)


def _set_nested(data: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


def _module_type(value: Any) -> type:
    if callable(value) and not isinstance(value, type):
        return inspect.signature(value).return_annotation
    return value


def add_instantiators(cli: Any) -> None:
    """Register the model and datamodule instantiators on the CLI's parser."""
    cli.parser.add_instantiator(_Instantiator(cli, "model"), _module_type(cli._model_class),
                                subclasses=cli.subclass_mode_model)
    cli.parser.add_instantiator(_Instantiator(cli, "data"), _module_type(cli._datamodule_class),
                                subclasses=cli.subclass_mode_data)


def instantiate_module(class_type: type[ModuleType], config: dict[str, Any]) -> ModuleType:
    """Rebuild `class_type` from hyperparameters saved under LightningCLI (what `load_from_checkpoint` calls)."""
    parser = ArgumentParser(exit_on_error=False)
    if "_class_path" in config:
        parser.add_subclass_arguments(class_type, "module", fail_untyped=False)
        config = {"class_path": config["_class_path"],
                  "dict_kwargs": {k: v for k, v in config.items() if k != "_class_path"}}
    else:
        parser.add_class_arguments(class_type, "module", fail_untyped=False)
    return parser.instantiate_classes(parser.parse_object({"module": config})).module
