"""Hyperparameter helpers under Lightning's path `utilities.parsing`.

`lightning_hasattr/getattr/setattr` look an attribute up where a tuner-style callback expects it: on the
module, in its `hparams`, on the Trainer's datamodule, or in the datamodule's `hparams`.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import MutableMapping
from typing import Any

from fulmen.core.hparams import AttributeDict
from fulmen.utilities.rank_zero import rank_zero_warn

__all__ = ["AttributeDict", "clean_namespace", "is_picklable", "lightning_getattr", "lightning_hasattr",
           "lightning_setattr", "parse_class_init_keys"]


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
