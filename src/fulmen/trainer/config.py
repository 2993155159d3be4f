"""TrainerConfig: the Trainer's loop, limit and cadence flags, parsed and validated once.

Owns: turning raw flag values into checked numbers (limits, intervals, accumulation, clipping, max_time).
Does not own: hardware flags (`strategies/select.py`) or callbacks and loggers (`trainer.py`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn
from fulmen.utilities.warnings import PossibleUserWarning


@dataclass
class TrainerConfig:
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
    val_check_interval: int | float
    check_val_every_n_epoch: int | None
    num_sanity_val_steps: int | float
    fast_dev_run: int
    accumulate_grad_batches: int
    gradient_clip_val: float | None
    gradient_clip_algorithm: str | None
    log_every_n_steps: int
    reload_dataloaders_every_n_epochs: int
    default_root_dir: str
    inference_mode: bool
    detect_anomaly: bool
    deterministic: bool | str | None
    benchmark: bool | None
    barebones: bool

    @classmethod
    def from_flags(
        cls, *, max_epochs: int | None = None, min_epochs: int | None = None, max_steps: int = -1,
        min_steps: int | None = None, max_time: Any = None, limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None, limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None, overfit_batches: int | float = 0.0,
        val_check_interval: int | float | None = None, check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None, fast_dev_run: int | bool = False,
        accumulate_grad_batches: int = 1, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None, log_every_n_steps: int | None = None,
        reload_dataloaders_every_n_epochs: int = 0, default_root_dir: str | os.PathLike | None = None,
        inference_mode: bool = True, detect_anomaly: bool = False, deterministic: bool | str | None = None,
        benchmark: bool | None = None, barebones: bool = False,
    ) -> TrainerConfig:
        _check_count("max_epochs", max_epochs, allow_minus_one=True)
        _check_count("max_steps", max_steps, allow_minus_one=True)
        _check_count("min_epochs", min_epochs)
        _check_count("min_steps", min_steps)
        _check_count("reload_dataloaders_every_n_epochs", reload_dataloaders_every_n_epochs)
        if isinstance(fast_dev_run, bool):
            fast_dev_run = int(fast_dev_run)
        if not isinstance(fast_dev_run, int) or fast_dev_run < 0:
            raise MisconfigurationException(
                f"fast_dev_run={fast_dev_run!r} is not valid: pass True, False, or a number of batches >= 0."
            )
        if not isinstance(accumulate_grad_batches, int) or isinstance(accumulate_grad_batches, bool) \
                or accumulate_grad_batches < 1:
            raise MisconfigurationException(
                f"`accumulate_grad_batches` must be an int >= 1; received {accumulate_grad_batches!r}."
            )
        if gradient_clip_algorithm is not None and gradient_clip_algorithm not in ("norm", "value"):
            raise MisconfigurationException(
                f"`gradient_clip_algorithm={gradient_clip_algorithm!r}` is invalid; use 'norm' or 'value'."
            )
        if gradient_clip_val is not None and (not isinstance(gradient_clip_val, (int, float)) or gradient_clip_val < 0):
            raise MisconfigurationException(
                f"`gradient_clip_val` must be a number >= 0 or None; received {gradient_clip_val!r}."
            )
        if check_val_every_n_epoch is not None and (
                not isinstance(check_val_every_n_epoch, int) or check_val_every_n_epoch < 1):
            raise MisconfigurationException(
                f"`check_val_every_n_epoch` must be an int >= 1 or None; received {check_val_every_n_epoch!r}."
            )
        if isinstance(val_check_interval, float) and check_val_every_n_epoch is None:
            raise MisconfigurationException(
                f"`val_check_interval={val_check_interval}` is a fraction of an epoch, but `check_val_every_n_epoch="
                "None` counts training batches across epochs. Pass an int `val_check_interval` (a number of batches), "
                "or set `check_val_every_n_epoch`."
            )
        val_check_interval = _parse_val_check_interval(val_check_interval)
        if num_sanity_val_steps is None:
            num_sanity_val_steps = 2
        if not isinstance(num_sanity_val_steps, int) or num_sanity_val_steps < -1:
            raise MisconfigurationException(
                f"`num_sanity_val_steps` must be an int >= 0, or -1 to run all validation batches; received "
                f"{num_sanity_val_steps!r}."
            )
        if log_every_n_steps is None:
            log_every_n_steps = 50
        _check_count("log_every_n_steps", log_every_n_steps)
        config = cls(
            max_epochs=max_epochs, min_epochs=min_epochs, max_steps=max_steps, min_steps=min_steps,
            max_time=parse_max_time(max_time),
            limit_train_batches=_parse_limit("limit_train_batches", limit_train_batches),
            limit_val_batches=_parse_limit("limit_val_batches", limit_val_batches),
            limit_test_batches=_parse_limit("limit_test_batches", limit_test_batches),
            limit_predict_batches=_parse_limit("limit_predict_batches", limit_predict_batches),
            overfit_batches=_parse_limit("overfit_batches", overfit_batches),
            val_check_interval=val_check_interval, check_val_every_n_epoch=check_val_every_n_epoch,
            num_sanity_val_steps=float("inf") if num_sanity_val_steps == -1 else num_sanity_val_steps,
            fast_dev_run=fast_dev_run, accumulate_grad_batches=accumulate_grad_batches,
            gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm,
            log_every_n_steps=log_every_n_steps,
            reload_dataloaders_every_n_epochs=reload_dataloaders_every_n_epochs,
            default_root_dir=os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd(),
            inference_mode=inference_mode, detect_anomaly=detect_anomaly, deterministic=deterministic,
            benchmark=benchmark, barebones=barebones,
        )
        config._apply_debug_modes()
        return config

    def _apply_debug_modes(self) -> None:
        if self.fast_dev_run:
            num = self.fast_dev_run
            self.limit_train_batches = self.limit_val_batches = num
            self.limit_test_batches = self.limit_predict_batches = num
            self.max_steps, self.max_epochs, self.max_time = num, 1, None
            self.num_sanity_val_steps = 0
            self.val_check_interval, self.check_val_every_n_epoch = 1.0, 1
            rank_zero_info(f"Running in `fast_dev_run` mode: the loops run {num} batch(es); "
                           "logging and checkpointing are off.")
        elif self.overfit_batches > 0:
            self.limit_train_batches = self.limit_val_batches = self.overfit_batches

    def resolve_max_epochs(self) -> None:
        """At the start of `fit`, an unset `max_epochs` takes its default for good (as `trainer.max_epochs` shows)."""
        if self.max_epochs is None:
            self.max_epochs = self.resolved_max_epochs()
            if self.max_epochs == 1000:
                rank_zero_warn("`max_epochs` was not set, so training stops after 1000 epochs. Set `max_epochs=-1` to "
                               "train without an epoch limit, or set `max_epochs` or `max_steps`.",
                               category=PossibleUserWarning)

    def resolved_max_epochs(self) -> int:
        """`max_epochs` with Lightning's default: 1000 when no step or time limit is set, else unlimited."""
        if self.max_epochs is not None:
            return self.max_epochs
        if self.max_steps == -1 and self.max_time is None:
            return 1000
        return -1


_NOT_YET = {
    "profiler": "profiling is not implemented yet; remove the flag (or pass `profiler=None`)",
    "model_registry": "uploading to a model registry is not implemented yet; remove the flag",
}


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
        raise MisconfigurationException(f"`{name}` must be a non-negative integer{extra}; received {value!r}.")


def _parse_limit(name: str, value: int | float | None) -> int | float:
    valid = (f"valid values are an int >= 0 (a number of batches; 0 skips the stage), a float in [0.0, 1.0] (a "
             f"fraction of each dataloader), or None; for all batches use `{name}=1.0` (the default)")
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(f"`{name}={value!r}` is invalid: {valid}.")
    if isinstance(value, int):
        if value < 0:
            raise MisconfigurationException(f"`{name}={value}` is invalid: {valid}.")
        return value
    if value > 1.0 and value.is_integer():
        return int(value)  # Lightning reads 2.0 as two batches
    if not 0.0 <= value <= 1.0:
        hint = f"; to limit to a number of batches pass an int, e.g. `{name}={int(value)}`" if value > 1.0 else ""
        raise MisconfigurationException(f"`{name}={value}` is invalid: {valid}{hint}.")
    return value


def _parse_val_check_interval(value: int | float | None) -> int | float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(
            f"`val_check_interval` must be an int (batches) or a float in (0.0, 1.0] (fraction of an epoch); "
            f"received {value!r}."
        )
    if isinstance(value, int) and value < 1 or isinstance(value, float) and not 0.0 < value <= 1.0:
        raise MisconfigurationException(
            f"`val_check_interval={value}` is invalid: use an int >= 1 (every N training batches) or a float "
            "in (0.0, 1.0] (a fraction of the training epoch)."
        )
    return value


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
