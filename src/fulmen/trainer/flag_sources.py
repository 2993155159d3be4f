"""Where Trainer flags come from besides the call: `PL_TRAINER_*` environment variables, and the flags that
`barebones=True` turns off."""

from __future__ import annotations

import ast
import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

from fulmen.utilities.rank_zero import rank_zero_info

_Init = TypeVar("_Init", bound=Callable[..., None])


def environment_flags(cls: type) -> dict[str, Any]:
    """The flags of `cls.__init__` set as `PL_<CLASSNAME>_<FLAG>` environment variables (empty values skipped).

    Values are read as Python literals (`"4"` is 4, `"True"` is True); anything else stays a string.
    """
    found = {}
    for name in inspect.signature(cls.__init__).parameters:
        # Lightning's quirk kept: the class's own name is used, so a `MyTrainer` subclass reads `PL_MYTRAINER_*`.
        raw = os.environ.get(f"PL_{cls.__name__.upper()}_{name.upper()}")
        if raw is None or raw == "":
            continue
        try:
            found[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            found[name] = raw
    return found


def defaults_from_environment(init: _Init) -> _Init:
    """Let `PL_TRAINER_*` environment variables supply flags the caller did not pass (the caller's always win)."""

    @functools.wraps(init)
    def init_with_environment(self: Any, *args: Any, **kwargs: Any) -> None:
        return init(self, *args, **{**environment_flags(type(self)), **kwargs})

    return init_with_environment  # type: ignore[return-value]


# The flags barebones mode turns off: (flag, value it forces, what it costs). A flag left at its default is forced;
# one the user turned on is refused, as in Lightning.
_BAREBONES_OFF = (
    ("enable_checkpointing", False, "Checkpointing"),
    ("logger", False, "Logging"),
    ("enable_progress_bar", False, "The progress bar"),
    ("log_every_n_steps", 0, "Logging"),
    ("enable_model_summary", False, "Model summary"),
    ("num_sanity_val_steps", 0, "Sanity checking"),
)
_BAREBONES_REFUSED = (("fast_dev_run", "Development run"), ("detect_anomaly", "Anomaly detection"),
                      ("profiler", "Profiling"))


def barebones_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags with everything that costs speed turned off; a flag that asks for one of those raises."""
    flags = dict(flags)
    for name, off, feature in _BAREBONES_OFF:
        value = flags[name]
        asked = value not in (None, False, 0) if name in ("logger", "log_every_n_steps", "num_sanity_val_steps") \
            else bool(value)
        if asked:
            raise ValueError(f"`Trainer(barebones=True, {name}={value!r})` was passed. {feature} can impact raw speed "
                             f"so it is disabled in barebones mode: remove `{name}` or drop `barebones=True`.")
        flags[name] = off
    for name, feature in _BAREBONES_REFUSED:
        value = flags[name]
        if value is not None and value is not False and value != 0:
            raise ValueError(f"`Trainer(barebones=True, {name}={value!r})` was passed. {feature} is not meant for "
                             f"raw speed, so it is disabled in barebones mode: remove `{name}` or drop `barebones=True`.")
    rank_zero_info("You are running in `Trainer(barebones=True)` mode: checkpointing, the progress bar, the model "
                   "summary, logging (also `self.log`), sanity checking, fast_dev_run, anomaly detection and "
                   "profiling are off, to measure the Trainer's own overhead.")
    return flags


class BarebonesLogRefusal:
    """Stands in for the metrics router in barebones mode: `self.log` raises instead of logging."""

    def log(self, module: Any, name: str, *args: Any, **kwargs: Any) -> None:
        from fulmen.utilities.exceptions import MisconfigurationException

        raise MisconfigurationException(
            f"You are trying to `self.log({name!r}, ...)` but `Trainer(barebones=True)` is configured. Logging can "
            "impact raw speed so it is disabled in barebones mode: remove the call or drop `barebones=True`.")
