"""TrainerConfig: the Trainer's loop, limit and cadence flags, parsed and validated once.

Owns: turning raw flag values into checked numbers (limits, intervals, accumulation, clipping, max_time).
Does not own: flag defaults (only `Trainer.__init__`'s signature has them), hardware flags
(`strategies/select.py`), determinism (`apply_determinism`) or callbacks and loggers (`trainer.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from functools import cache
from typing import Any

from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn
from fulmen.utilities.warnings import PossibleUserWarning


@dataclass
class TrainerConfig:
    """The parsed flags. Build it with `from_flags`; constructing it directly checks and parses the raw values."""

    max_epochs: int | None
    min_epochs: int | None
    max_steps: int
    min_steps: int | None
    max_time: timedelta | None
    limit_train_batches: int | float
    limit_val_batches: int | float
    limit_test_batches: int | float
    limit_predict_batches: int | float
    overfit_batches: int | float
    val_check_interval: int | float | timedelta
    check_val_every_n_epoch: int | None
    num_sanity_val_steps: int | float
    fast_dev_run: int | bool
    accumulate_grad_batches: int
    gradient_clip_val: float | None
    gradient_clip_algorithm: str | None
    log_every_n_steps: int
    reload_dataloaders_every_n_epochs: int
    default_root_dir: str
    inference_mode: bool
    detect_anomaly: bool

    @classmethod
    def from_flags(cls, arguments: Mapping[str, Any] | None = None, /, **flags: Any) -> TrainerConfig:
        """Parse the flags named like this class's fields: taken from `arguments` (the Trainer's own arguments,
        other names ignored), then from keyword `flags`; any still missing takes `Trainer.__init__`'s default."""
        unknown = sorted(flags.keys() - _FLAG_NAMES)
        if unknown:
            raise TypeError(f"TrainerConfig.from_flags() got unknown flag(s) {unknown}; known: {sorted(_FLAG_NAMES)}.")
        values = {name: arguments[name] for name in _FLAG_NAMES if name in arguments} if arguments else {}
        values.update(flags)
        if len(values) < len(_FLAG_NAMES):
            defaults = _trainer_defaults()
            values.update({name: defaults[name] for name in _FLAG_NAMES - values.keys()})
        return cls(**values)

    def __post_init__(self) -> None:
        _check_count("max_epochs", self.max_epochs, allow_minus_one=True)
        _check_count("max_steps", self.max_steps, allow_minus_one=True)
        _check_count("min_epochs", self.min_epochs)
        _check_count("min_steps", self.min_steps)
        _check_count("reload_dataloaders_every_n_epochs", self.reload_dataloaders_every_n_epochs)
        # True means one batch; kept as given (False stays False), and 1 reads True, as `trainer.fast_dev_run` does
        # in Lightning.
        if not isinstance(self.fast_dev_run, int) or self.fast_dev_run < 0:
            raise MisconfigurationException(
                f"fast_dev_run={self.fast_dev_run!r} is not a valid configuration. It should be >= 0: pass True, "
                "False, or a number of batches."
            )
        if self.fast_dev_run == 1:
            self.fast_dev_run = True
        _announce_ones(self)
        accumulate = self.accumulate_grad_batches
        if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
            raise MisconfigurationException(f"`accumulate_grad_batches` must be an int >= 1; received {accumulate!r}.")
        if self.gradient_clip_algorithm is not None and self.gradient_clip_algorithm not in ("norm", "value"):
            raise MisconfigurationException(
                f"`gradient_clip_algorithm` {self.gradient_clip_algorithm} is invalid. Allowed algorithms: "
                "['value', 'norm']."
            )
        clip = self.gradient_clip_val
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))):
            raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {clip}.")  # Lightning's words
        if clip is not None and clip < 0:  # beyond Lightning, which silently does not clip
            raise MisconfigurationException(f"`gradient_clip_val` must be a number >= 0 or None; received {clip!r}.")
        every = self.check_val_every_n_epoch
        if every is not None and (not isinstance(every, int) or every < 1):
            raise MisconfigurationException(
                f"`check_val_every_n_epoch` should be an integer, found {every!r}: use an int >= 1, or None to count "
                "training batches across epochs."
            )
        if isinstance(self.val_check_interval, float) and every is None:
            raise MisconfigurationException(  # Lightning's words, then why and the fix
                "`val_check_interval` should be an integer or a time-based duration (str 'DD:HH:MM:SS', "
                "datetime.timedelta, or dict kwargs for timedelta) when `check_val_every_n_epoch=None`: "
                f"{self.val_check_interval} is a fraction of an epoch, but `check_val_every_n_epoch=None` counts "
                "training batches across epochs. Pass an int (a number of batches), or set `check_val_every_n_epoch`."
            )
        if isinstance(self.val_check_interval, (str, dict, timedelta)):
            # Time-based: validate once this much wall-clock time passed since the last validation.
            self.val_check_interval = parse_time_interval("val_check_interval", self.val_check_interval)
        else:
            self.val_check_interval = _parse_val_check_interval(self.val_check_interval)
        # Lightning's signature says None for these two and resolves it to 2 and 50 inside the Trainer.
        if self.num_sanity_val_steps is None:
            self.num_sanity_val_steps = 2
        if not isinstance(self.num_sanity_val_steps, int) or self.num_sanity_val_steps < -1:
            raise MisconfigurationException(
                f"`num_sanity_val_steps` must be an int >= 0, or -1 to run all validation batches; received "
                f"{self.num_sanity_val_steps!r}."
            )
        if self.num_sanity_val_steps == -1:
            self.num_sanity_val_steps = float("inf")  # -1 means every validation batch
        if self.log_every_n_steps is None:
            self.log_every_n_steps = 50
        _check_count("log_every_n_steps", self.log_every_n_steps)
        self.max_time = parse_max_time(self.max_time)
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                     "overfit_batches"):
            setattr(self, name, _parse_limit(name, getattr(self, name)))
        root = self.default_root_dir  # None: the working directory when the Trainer is built, as in Lightning
        if root is not None:
            from fulmen.checkpoint_io import local_path

            root = local_path(root, "write logs and checkpoints under", custom_io=False)
        self.default_root_dir = os.fspath(root) if root is not None else os.getcwd()
        self._apply_debug_modes()

    def _apply_debug_modes(self) -> None:
        if self.fast_dev_run:
            # Lightning's fast_dev_run overrides every limit: N batches per stage, one epoch, no sanity check.
            num = int(self.fast_dev_run)
            self.limit_train_batches = self.limit_val_batches = num
            self.limit_test_batches = self.limit_predict_batches = num
            self.max_steps, self.max_epochs = num, 1
            self.num_sanity_val_steps = 0
            self.val_check_interval, self.check_val_every_n_epoch = 1.0, 1
            rank_zero_info(f"Running in `fast_dev_run` mode: the loops run {num} batch(es); "
                           "logging and checkpointing are off.")
        elif self.overfit_batches > 0:
            # Lightning's overfit_batches replaces the train and val limits (not test/predict) and is ignored
            # under fast_dev_run.
            self.limit_train_batches = self.limit_val_batches = self.overfit_batches

    def resolve_max_epochs(self, timer: bool) -> None:
        """At the start of `fit`, an unset `max_epochs` takes its default for good (as `trainer.max_epochs` shows);
        `timer`: whether a `Timer` callback (`max_time`'s or the user's) ends the fit."""
        if self.max_epochs is None:
            self.max_epochs = self.resolved_max_epochs(timer)
            if self.max_epochs == 1000:
                rank_zero_warn("`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit, "
                               "set `max_epochs=-1`.", category=PossibleUserWarning)  # Lightning's words

    def resolved_max_epochs(self, timer: bool) -> int:
        """`max_epochs` with Lightning's default: 1000 when neither a step limit nor a `Timer` callback (`timer`)
        ends the fit, else unlimited."""
        if self.max_epochs is not None:
            return self.max_epochs
        # Lightning caps an unset max_epochs at 1000 only when nothing else would end the fit.
        return 1000 if self.max_steps == -1 and not timer else -1


_FLAG_NAMES = frozenset(field.name for field in fields(TrainerConfig))


class ConfigFlag:
    """An attribute that reads and writes the parsed flag of the same name on its owner's `TrainerConfig` (found
    under `holder`): a loop's `max_epochs` is the Trainer's."""

    holder = "config"

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else getattr(getattr(instance, self.holder), self._name)

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(getattr(instance, self.holder), self._name, value)


@cache
def _trainer_defaults() -> dict[str, Any]:
    """The defaults of `Trainer.__init__`, the one place flag defaults are declared."""
    import inspect

    from fulmen.trainer.trainer import Trainer  # deferred: the Trainer imports this module

    return {name: parameter.default for name, parameter in inspect.signature(Trainer).parameters.items()}


_NOT_YET = {
    "model_registry": "uploading to a model registry is not implemented yet; remove the flag",
}
_PROFILERS = {"simple": "SimpleProfiler", "advanced": "AdvancedProfiler", "pytorch": "PyTorchProfiler"}


def select_profiler(profiler: Any) -> Any:
    """`Trainer(profiler=...)`: a name ("simple", "advanced", "pytorch"; any case), a Profiler, or None (a
    `PassThroughProfiler`, which records nothing and makes the Trainer wrap nothing)."""
    import fulmen.profilers as profilers

    if isinstance(profiler, str):
        name = _PROFILERS.get(profiler.lower())
        if name is None:
            raise MisconfigurationException(
                "When passing string value for the `profiler` parameter of `Trainer`, it can only be one of "
                f"{list(_PROFILERS)}; received {profiler!r}. (XLA's profiler is not available in fulmen.)")
        return getattr(profilers, name)()
    if profiler is None:
        return profilers.PassThroughProfiler()
    if not isinstance(profiler, profilers.Profiler):
        raise MisconfigurationException(
            f"`Trainer(profiler={profiler!r})` is not a profiler: pass one of {list(_PROFILERS)}, an instance of "
            "`fulmen.profilers.Profiler` (e.g. `SimpleProfiler(filename='perf')`), or None.")
    return profiler


def reject_unimplemented(**flags: Any) -> None:
    """Flags fulmen accepts for Lightning compatibility but cannot honour yet must fail loudly, not be ignored."""
    for name, value in flags.items():
        if value is not None:
            raise NotImplementedError(f"`Trainer({name}={value!r})`: {_NOT_YET[name]}.")


def _check_count(name: str, value: Any, allow_minus_one: bool = False) -> None:
    if value is None:
        return
    lowest = -1 if allow_minus_one else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        extra = " or -1 (no limit)" if allow_minus_one else ""
        if name == "reload_dataloaders_every_n_epochs":  # Lightning's words for this one
            raise MisconfigurationException(f"`{name}` should be an int >= 0, got {value}.")
        raise MisconfigurationException(f"`{name}` must be a non-negative integer{extra}; received {value!r}.")


def _announce_ones(config: TrainerConfig) -> None:
    """Lightning's info line for each limit passed as exactly 1 or 1.0: the int is one batch, the float all of them
    (an easy mix-up). Same flags and conditions as Lightning: none under fast_dev_run but `overfit_batches`, and
    no train/val limits when `overfit_batches` replaces them."""
    names = ["overfit_batches"]
    if not config.fast_dev_run:
        overfit = config.overfit_batches
        if not (isinstance(overfit, (int, float)) and overfit > 0):
            names += ["limit_train_batches", "limit_val_batches"]
        names += ["limit_test_batches", "limit_predict_batches", "val_check_interval"]
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != 1:
            continue
        whole = isinstance(value, float)
        if name == "limit_train_batches":
            what = "100% of the batches per epoch will be used" if whole else "1 batch per epoch will be used"
        elif name == "val_check_interval":
            what = "validation will run at the end of the training epoch" if whole else \
                "validation will run after every batch"
        else:
            what = "100% of the batches will be used" if whole else "1 batch will be used"
        rank_zero_info(f"`Trainer({name}={value})` was configured so {what}.")


def _parse_limit(name: str, value: int | float | None) -> int | float:
    valid = (f"valid values are an int >= 0 (a number of batches; 0 skips the stage), a float in [0.0, 1.0] (a "
             f"fraction of each dataloader), or None; for all batches use `{name}=1.0` (the default)")
    if value is None:
        return 1.0  # Lightning's None: every batch
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(f"You have passed invalid value {value!r} for {name}, it has to be in "
                                        f"[0.0, 1.0] or an int: {valid}.")
    if isinstance(value, int):
        if value < 0:
            raise MisconfigurationException(f"You have passed invalid value {value} for {name}, it has to be in "
                                            f"[0.0, 1.0] or an int: {valid}.")
        return value
    if value > 1.0 and value.is_integer():
        return int(value)  # Lightning reads a whole-number float above 1.0 (2.0) as a count of batches
    if not 0.0 <= value <= 1.0:
        hint = f"; to limit to a number of batches pass an int, e.g. `{name}={int(value)}`" if value > 1.0 else ""
        raise MisconfigurationException(f"You have passed invalid value {value} for {name}, it has to be in "
                                        f"[0.0, 1.0] or an int: {valid}{hint}.")
    return value


def _parse_val_check_interval(value: int | float | None) -> int | float:
    if value is None:
        return 1.0  # Lightning's None: validate once per training epoch
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(
            f"`val_check_interval` must be an int (batches), a float in (0.0, 1.0] (fraction of an epoch), or a "
            f"duration (a `timedelta`, a dict such as {{'minutes': 30}}, or 'DD:HH:MM:SS'); received {value!r}."
        )
    if isinstance(value, int) and value < 1 or isinstance(value, float) and not 0.0 < value <= 1.0:
        raise MisconfigurationException(
            f"`val_check_interval={value}` is invalid: use an int >= 1 (every N training batches) or a float "
            "in (0.0, 1.0] (a fraction of the training epoch)."
        )
    return value


def parse_time_interval(name: str, value: str | dict | timedelta) -> timedelta:
    """A duration given as a `timedelta`, a dict of its keyword arguments, or a string "DD:HH:MM:SS" of ints."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, dict):
        try:
            return timedelta(**value)
        except TypeError as error:
            raise MisconfigurationException(f"`{name}={value!r}` is invalid ({error}): use keyword arguments of "
                                            "`datetime.timedelta`, such as {'hours': 1, 'minutes': 30}.") from None
    parts = value.split(":")
    try:
        days, hours, minutes, seconds = (int(part) for part in parts)
    except ValueError:
        raise MisconfigurationException(f"`{name}={value!r}` is invalid: use a string 'DD:HH:MM:SS' of whole "
                                        "numbers, e.g. '00:01:30:00' for 1.5 hours.") from None
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_max_time(value: Any) -> timedelta | None:
    """Accept None, a timedelta, a dict of timedelta kwargs, or "DD:HH:MM:SS"."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, dict):
        return timedelta(**value)
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+):(\d{1,2}):(\d{1,2}):(\d{1,2})", value.strip())
        if match:
            days, hours, minutes, seconds = (int(group) for group in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise MisconfigurationException(
        f"`max_time={value!r}` is invalid: pass a `datetime.timedelta`, a dict such as {{'hours': 1}}, "
        "or a string 'DD:HH:MM:SS'."
    )
