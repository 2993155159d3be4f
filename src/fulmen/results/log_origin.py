"""LogOrigin: where and how one logged key was first logged in a run, for `trainer.explain_metrics()`.

Owns: recording the call site and the arguments as the user passed them. It runs once per key per run
(when the key's first entry is created), never per `self.log` call, so logging costs nothing more.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

# `self.log` arguments recorded as given; the others (the value, `enable_graph`, `metric_attribute`) explain nothing.
_RECORDED = ("prog_bar", "logger", "on_step", "on_epoch", "reduce_fx", "sync_dist", "sync_dist_group",
             "add_dataloader_idx", "batch_size", "rank_zero_only")
_TORCH_REDUCTIONS = {torch.mean: "torch.mean", torch.sum: "torch.sum", torch.max: "torch.max", torch.min: "torch.min"}
_machinery: dict[Any, str] | None = None  # code object -> role, filled on first use (no import cycle)
_defaults: dict[str, Any] = {}


@dataclass(slots=True)
class LogOrigin:
    """One logged key (per hook) as first logged in this run: its options, who logged it and with which arguments.

    Plain data only (no tensors or metric objects), so it can travel back from a spawned rank 0.

    Attributes:
        hook, key: the hook it was logged in and the key as stored (with any '/dataloader_idx_N').
        step_name, epoch_name: the keys of its step and epoch values (the key itself unless both are on).
        name: the name the user passed (without the dataloader suffix).
        options: `on_step`, `on_epoch`, `prog_bar`, `logger`, `reduce` (normalised), `sync_dist` (after
            `rank_zero_only`), `enable_graph`, as the entry resolved them.
        dataloader_idx: the evaluation dataloader it was logged for, when several ran.
        sync_dist_group: the type name of the `sync_dist_group` passed, if any.
        given: the arguments the user passed that differ from `self.log`'s defaults, rendered as text.
        via_log_dict: logged through `self.log_dict`.
        call_site: `(path, line, function qualname)` of the user code that called `self.log`, or None.
        metric: for a torchmetrics object, `(class name, sync_on_compute, dist_sync_on_step)`, else None.
        training: logged into the training collection (else validation/test).
    """

    hook: str
    key: str
    step_name: str
    epoch_name: str
    name: str
    options: dict[str, Any]
    dataloader_idx: int | None
    sync_dist_group: str | None
    given: dict[str, str]
    via_log_dict: bool
    call_site: tuple[str, int, str] | None
    metric: tuple[str, bool, bool] | None
    training: bool


def record_origin(entry: Any, value: Any, training: bool) -> LogOrigin:
    """Describe `entry` (a new `LoggedValue`) from the stack of the `self.log` call that created it."""
    machinery = _machinery if _machinery is not None else _load_machinery()
    arguments: dict[str, Any] | None = None
    via_log_dict = False
    call_site = None
    frame = sys._getframe(1)
    while frame is not None:
        role = machinery.get(frame.f_code)
        if role == "log":
            # Read once per key per run: what the user passed, before defaults were applied.
            local_values = frame.f_locals
            arguments = {name: local_values.get(name) for name in ("name", *_RECORDED)}
        elif role == "log_dict":
            via_log_dict = True
        elif role is None and arguments is not None:
            code = frame.f_code
            call_site = (code.co_filename, frame.f_lineno, getattr(code, "co_qualname", code.co_name))
            break
        frame = frame.f_back
    del frame
    given = {} if arguments is None else {
        name: _render(arguments[name]) for name in _RECORDED if not _is_default(arguments[name], _defaults[name])
    }
    metric = None
    if not isinstance(value, torch.Tensor):  # a torchmetrics object (`self.log` turned numbers into tensors)
        metric = (type(value).__name__, bool(getattr(value, "sync_on_compute", True)),
                  bool(getattr(value, "dist_sync_on_step", False)))
    options = {"on_step": entry.on_step, "on_epoch": entry.on_epoch, "prog_bar": entry.prog_bar,
               "logger": entry.logger, "reduce": entry.reduce, "sync_dist": entry.sync_dist,
               "enable_graph": entry.enable_graph}
    group = entry.sync_dist_group
    return LogOrigin(
        hook=entry.hook, key=entry.name, step_name=entry.step_name, epoch_name=entry.epoch_name,
        name=entry.name if arguments is None else arguments["name"], options=options,
        dataloader_idx=entry.dataloader_idx, sync_dist_group=None if group is None else type(group).__name__,
        given=given, via_log_dict=via_log_dict, call_site=call_site, metric=metric, training=training,
    )


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


def _render(value: Any) -> str:
    if callable(value) and value in _TORCH_REDUCTIONS:
        return _TORCH_REDUCTIONS[value]
    if value is not None and not isinstance(value, (bool, int, float, str)):
        return f"<{type(value).__name__}>"  # e.g. a process group: its repr holds a memory address
    return repr(value)


def _load_machinery() -> dict[Any, str]:
    """The code objects between the user's `self.log` call and `record_origin`, by role."""
    global _machinery
    from fulmen.core.module import LightningModule
    from fulmen.results.metrics_router import MetricsRouter
    from fulmen.results.result_collection import ResultCollection

    parameters = inspect.signature(LightningModule.log).parameters
    _defaults.update({name: parameters[name].default for name in _RECORDED})
    _machinery = {LightningModule.log.__code__: "log", LightningModule.log_dict.__code__: "log_dict",
                  MetricsRouter.log.__code__: "router", ResultCollection.log.__code__: "collection"}
    return _machinery


def short_call_site(call_site: tuple[str, int, str] | None) -> str:
    """`Module.training_step (file.py:42)`, or a note when the call did not come through `self.log`."""
    if call_site is None:
        return "(not called through LightningModule.log)"
    path, line, function = call_site
    return f"{function} ({os.path.basename(path)}:{line})"
