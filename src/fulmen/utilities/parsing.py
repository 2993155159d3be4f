"""Hyperparameter helpers under Lightning's path `utilities.parsing`.

`lightning_hasattr/getattr/setattr` look an attribute up where a tuner-style callback expects it: on the
module, in its `hparams`, on the Trainer's datamodule, or in the datamodule's `hparams`.
"""

from __future__ import annotations

import inspect
import pickle
import types
from collections.abc import Iterable, MutableMapping
from dataclasses import fields, is_dataclass
from typing import Any

from fulmen.core.hparams import AttributeDict
from fulmen.utilities.rank_zero import rank_zero_warn

__all__ = ["AttributeDict", "clean_namespace", "collect_init_args", "get_init_args", "is_picklable",
           "lightning_getattr", "lightning_hasattr", "lightning_setattr", "parse_class_init_keys",
           "save_hyperparameters"]


def is_picklable(obj: object) -> bool:
    """Whether `pickle.dumps(obj)` succeeds."""
    try:
        pickle.dumps(obj)
    except (pickle.PickleError, AttributeError, RuntimeError, TypeError):
        return False
    return True


def clean_namespace(hparams: MutableMapping) -> None:
    """Remove, in place and with a warning for each, the entries of `hparams` that cannot be pickled."""
    for key in [key for key, value in hparams.items() if not is_picklable(value)]:
        rank_zero_warn(f"Attribute '{key}' removed from hparams because it cannot be pickled. You can suppress "
                       f"this warning by setting `self.save_hyperparameters(ignore=['{key}'])`.")
        del hparams[key]


def parse_class_init_keys(cls: type) -> tuple[str, str | None, str | None]:
    """The names `cls.__init__` gives to `self`, to `*args` (or None) and to `**kwargs` (or None)."""
    params = list(inspect.signature(cls.__init__).parameters.values())  # type: ignore[misc]

    def first_of(kind: inspect._ParameterKind) -> str | None:
        return next((param.name for param in params if param.kind == kind), None)

    return params[0].name, first_of(inspect.Parameter.VAR_POSITIONAL), first_of(inspect.Parameter.VAR_KEYWORD)


def _frame_init_args(frame: types.FrameType) -> tuple[Any, dict[str, Any]]:
    """`(self, arguments)` of the `__init__` running in `frame`, or `(None, {})` when `frame` is not a class's
    `__init__` that refers to its class (as `super()` does)."""
    local_vars = frame.f_locals
    if "__class__" not in local_vars or frame.f_code.co_name != "__init__":
        return None, {}
    cls = local_vars["__class__"]
    self_name, args_name, kwargs_name = parse_class_init_keys(cls)
    arguments = {name: local_vars[name] for name in inspect.signature(cls.__init__).parameters}
    if kwargs_name:
        arguments.update(arguments.get(kwargs_name, {}))  # **kwargs count as arguments of their own
    excluded = {self_name, args_name, kwargs_name, "__class__", "frame", "frame_args"}
    return local_vars.get(self_name), {key: value for key, value in arguments.items() if key not in excluded}


def get_init_args(frame: types.FrameType) -> dict[str, Any]:
    """The arguments of the `__init__` running in `frame` (`**kwargs` merged in; `self`, `*args` left out)."""
    return _frame_init_args(frame)[1]


def collect_init_args(frame: types.FrameType, path_args: list[dict[str, Any]], inside: bool = False,
                      classes: tuple[type, ...] = ()) -> list[dict[str, Any]]:
    """Append to `path_args` the arguments of each `__init__` in the chain of constructor calls that runs in
    `frame` and the frames above it (only of instances of `classes`, if given), most specific class last."""
    while isinstance(frame.f_back, types.FrameType):
        instance, arguments = _frame_init_args(frame)
        if "__class__" in frame.f_locals and (not classes or isinstance(instance, classes)):
            path_args.append(arguments)
            inside = True
        elif inside:
            break  # the chain of constructors has ended
        frame = frame.f_back
    return path_args


def _holders(model: Any, attribute: str) -> list[Any]:
    """Every object or hparams dict holding `attribute`, in Lightning's order: module, module hparams,
    datamodule, datamodule hparams."""
    found = []
    if hasattr(model, attribute):
        found.append(model)
    if hasattr(model, "hparams") and attribute in model.hparams:
        found.append(model.hparams)
    trainer = getattr(model, "_trainer", None)
    datamodule = trainer.datamodule if trainer is not None else None
    if datamodule is not None:
        if hasattr(datamodule, attribute):
            found.append(datamodule)
        if hasattr(datamodule, "hparams") and attribute in datamodule.hparams:
            found.append(datamodule.hparams)
    return found


def _not_found(attribute: str) -> AttributeError:
    return AttributeError(f"{attribute} is neither stored in the model namespace nor the `hparams` namespace/dict, "
                          f"nor the datamodule.")


def lightning_hasattr(model: Any, attribute: str) -> bool:
    """Whether the module, its hparams, the datamodule or the datamodule's hparams has `attribute`."""
    return bool(_holders(model, attribute))


def lightning_getattr(model: Any, attribute: str) -> Any:
    """`attribute`'s value from the last place holding it (datamodule hparams, datamodule, module hparams,
    module); AttributeError if none does."""
    holders = _holders(model, attribute)
    if not holders:
        raise _not_found(attribute)
    holder = holders[-1]  # Lightning reads the last holder
    return holder[attribute] if isinstance(holder, dict) else getattr(holder, attribute)


def lightning_setattr(model: Any, attribute: str, value: Any) -> None:
    """Set `attribute` to `value` everywhere it is held; AttributeError if nowhere."""
    holders = _holders(model, attribute)
    if not holders:
        raise _not_found(attribute)
    for holder in holders:
        if isinstance(holder, dict):
            holder[attribute] = value
        else:
            setattr(holder, attribute, value)


def save_hyperparameters(obj: Any, *args: Any, ignore: str | Iterable[str] | None = None,
                         frame: types.FrameType | None = None, given_hparams: dict[str, Any] | None = None) -> None:
    """`obj.save_hyperparameters(*args, ignore=...)` as a function, for a module or datamodule `obj`.

    The `__init__` arguments are `given_hparams` when given, else the init fields of a dataclass `obj`, else read
    from the `__init__` frames of `obj` above `frame` (default: the caller's frame).
    """
    from fulmen.core.hparams import HyperparametersMixin, _collect_init_args, store_hyperparameters

    if not isinstance(obj, HyperparametersMixin):
        raise TypeError(f"`save_hyperparameters` stores into a LightningModule or LightningDataModule (a "
                        f"HyperparametersMixin); received {type(obj).__name__}.")
    if len(args) == 1 and not isinstance(args[0], str) and not args[0]:
        return  # an empty container: nothing to save (as Lightning)
    if given_hparams is not None:
        init_args = dict(given_hparams)
    elif is_dataclass(obj):
        init_args = {field.name: getattr(obj, field.name) for field in fields(obj) if field.init}
    else:
        if frame is None:
            frame = inspect.currentframe().f_back  # type: ignore[union-attr]
        if not isinstance(frame, types.FrameType):
            raise AttributeError("There is no `frame` available while being required.")
        init_args = _collect_init_args(frame)
    store_hyperparameters(obj, args, ignore, init_args)
