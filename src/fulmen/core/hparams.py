"""`save_hyperparameters` and the `hparams` containers shared by modules and datamodules."""

from __future__ import annotations

import copy
import inspect
from argparse import Namespace
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any

from torch import nn

from fulmen.utilities.rank_zero import rank_zero_warn


# Set by LightningCLI while it builds a module: `save_hyperparameters()` then stores the parsed config (and the
# function that rebuilds from it) instead of the `__init__` arguments, so `load_from_checkpoint` can rebuild nested
# classes given by `class_path`.
_given_hyperparameters: ContextVar[dict[str, Any] | None] = ContextVar("_given_hyperparameters", default=None)


@contextmanager
def given_hyperparameters(hparams: dict[str, Any], instantiator: str) -> Iterator[None]:
    """Within the block, `save_hyperparameters()` saves `hparams` plus `_instantiator` (an import path)."""
    token = _given_hyperparameters.set({**hparams, "_instantiator": instantiator})
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)


class AttributeDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as error:
            raise AttributeError(f"'AttributeDict' has no key {key!r}") from error

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


class HyperparametersMixin:
    """Gives `save_hyperparameters()`, `hparams` and `hparams_initial` to modules and datamodules."""

    __jit_unused_properties__: list[str] = ["hparams", "hparams_initial"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log_hyperparams = False

    def save_hyperparameters(
        self, *args: Any, ignore: str | Iterable[str] | None = None, frame: FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Store the `__init__` arguments (all, the named ones, or one dict/Namespace) in `self.hparams`."""
        from fulmen.utilities.parsing import save_hyperparameters

        self._log_hyperparams = logger
        given = _given_hyperparameters.get()
        if given is None and frame is None:
            frame = inspect.currentframe().f_back  # type: ignore[union-attr]
        # One path for the method and the function (a dataclass module: its init fields).
        save_hyperparameters(self, *args, ignore=ignore, frame=frame, given_hparams=given)

    def remove_ignored_hparams(self, ignore_list: Iterable[str]) -> None:
        """Drop the named hyperparameters from `hparams` (e.g. ones a parent class saved that a subclass ignores);
        `hparams_initial` keeps them until the next `save_hyperparameters`."""
        for key in ignore_list:
            self.hparams.pop(key, None)

    def _set_hparams(self, hparams: Mapping[str, Any]) -> None:
        if not hasattr(self, "_hparams"):
            object.__setattr__(self, "_hparams", AttributeDict())
        self._hparams.update(hparams)

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters; readable as attributes or items."""
        if not hasattr(self, "_hparams"):
            object.__setattr__(self, "_hparams", AttributeDict())
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """A copy of the hyperparameters as they were saved, unaffected by later edits."""
        if not hasattr(self, "_hparams_initial"):
            return AttributeDict()
        return copy.deepcopy(self._hparams_initial)


def store_hyperparameters(obj: Any, args: tuple, ignore: str | Iterable[str] | None,
                          init_args: dict[str, Any]) -> None:
    """`save_hyperparameters` on `obj` (a HyperparametersMixin) given its `__init__` arguments `init_args`."""
    ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
    if len(args) == 1 and not isinstance(args[0], str):
        chosen = args[0]
        if isinstance(chosen, Namespace):
            chosen = vars(chosen)
        if not isinstance(chosen, Mapping):
            raise ValueError(
                f"`save_hyperparameters` takes argument names, or one dict or Namespace; received "
                f"{type(chosen).__name__}."
            )
        hparams = dict(chosen)
        # Remember which __init__ argument held the container, so loading passes it back the same way.
        obj._hparams_name = next((name for name, value in init_args.items() if value is args[0]), None)
        obj._hparams_type = "Namespace" if isinstance(args[0], Namespace) else "dict"
    else:
        names = args or tuple(init_args)
        unknown = [name for name in names if name not in init_args]
        if unknown:
            raise ValueError(
                f"`save_hyperparameters` was given {unknown}, which are not arguments of "
                f"{type(obj).__name__}.__init__ (its arguments: {list(init_args)})."
            )
        hparams = {name: init_args[name] for name in names}
        obj._hparams_name = "kwargs"
    for name, value in list(hparams.items()):
        if name in ignored:
            del hparams[name]
        elif isinstance(value, nn.Module):
            rank_zero_warn(
                f"Attribute {name!r} is an instance of `nn.Module` and is already saved during checkpointing. "
                f"It is recommended to ignore them using `self.save_hyperparameters(ignore=[{name!r}])`."
            )
    obj._set_hparams(hparams)
    obj.remove_ignored_hparams(ignored)  # also forget what an earlier (parent) call saved under those names
    obj._hparams_initial = copy.deepcopy(obj._hparams)


def _collect_init_args(frame: FrameType | None) -> dict[str, Any]:
    """Gather the `__init__` arguments from `frame` outwards, as Lightning does: up to the first method of a
    HyperparametersMixin class, then through every consecutive one. That is a subclass chain (`super().__init__`),
    and also - Lightning's rule, which its tests require - a module built inside another module's `__init__`:
    the outer module's arguments join (and, for a shared name, win over) the inner one's."""
    collected: dict[str, Any] = {}
    inside = False
    while frame is not None and frame.f_back is not None:
        owner = frame.f_locals.get("__class__")  # set in methods that use `super()`
        # Beyond Lightning: an `__init__` that calls its base's `__init__` by name (no `super()`) counts too.
        if (isinstance(owner, type) and issubclass(owner, HyperparametersMixin)
                or frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), HyperparametersMixin)):
            collected.update(_frame_arguments(frame))  # outer frames come later and win
            inside = True
        elif inside:
            break
        frame = frame.f_back
    return collected


def _frame_arguments(frame: FrameType) -> dict[str, Any]:
    """A method frame's arguments: the named ones (not `self`, not `*args`) and the `**kwargs` entries."""
    local_vars, code = frame.f_locals, frame.f_code
    num_args = code.co_argcount + code.co_kwonlyargcount
    has_varargs = bool(code.co_flags & inspect.CO_VARARGS)
    arguments = {name: local_vars[name] for name in code.co_varnames[1:num_args] if name in local_vars}
    if code.co_flags & inspect.CO_VARKEYWORDS:
        arguments.update(local_vars.get(code.co_varnames[num_args + int(has_varargs)], {}))
    return arguments


def checkpointable_hparams(hparams: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Split `hparams` into what a safe checkpoint holds and what it leaves out.

    Returns `(plain, left_out)`: `plain` has the hyperparameters as plain containers and primitives that
    `torch.load(weights_only=True)` accepts (Namespaces and mappings become dicts, paths strings, enums their
    values; tensors, dtypes and devices stay). Any other value (a module, a class, a function...) would need
    arbitrary unpickling to load, so its top-level hyperparameter goes to `left_out`, described by type.
    """
    plain: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for key, value in dict(hparams).items():
        try:
            plain[key] = _plain(value)
        except _NotPlain as error:
            left_out[str(key)] = _describe(error.value)
    return plain, left_out


def warn_unsaved_hparams(owner: Any, label: str) -> None:
    """Warn about hyperparameters that checkpoints will leave out (called once, at fit start)."""
    if not getattr(owner, "_hparams", None):
        return
    _, left_out = checkpointable_hparams(owner.hparams)
    if not left_out:
        return
    described = ", ".join(f"{name!r} ({kind})" for name, kind in left_out.items())
    names = list(left_out)
    rank_zero_warn(
        f"The {label}'s hyperparameters {described} are not plain values: they stay in `self.hparams`, but "
        f"checkpoints leave them out (a safe checkpoint holds no pickled objects; the weights are saved as usual). "
        f"`load_from_checkpoint` then needs them again, e.g. `{type(owner).__name__}.load_from_checkpoint(path, "
        f"{names[0]}=...)`. To silence this, use `self.save_hyperparameters(ignore={names!r})`."
    )


class _NotPlain(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes)


def _plain(value: Any) -> Any:
    import enum
    import os

    import torch

    if isinstance(value, _PLAIN_LEAVES) or isinstance(value, (torch.Tensor, torch.dtype, torch.device)):
        return value
    if isinstance(value, Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return [_plain(item) for item in sorted(value, key=repr)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    raise _NotPlain(value)


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__") and not isinstance(value, nn.Module):
        return f"the function {getattr(value, '__module__', '?')}.{value.__qualname__}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"
