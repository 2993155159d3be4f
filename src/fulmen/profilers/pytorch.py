"""PyTorchProfiler: `torch.profiler` around the run — operator tables, Chrome traces, module names."""

from __future__ import annotations

import inspect
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.autograd.profiler import EventList, record_function
from torch.profiler import ProfilerAction, ProfilerActivity, tensorboard_trace_handler

from fulmen.profilers.profiler import Profiler
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import WarningCache, rank_zero_warn

_warnings = WarningCache()
_STEP_KINDS = ("training_step", "validation_step", "test_step", "predict_step")


class RegisterRecordFunction:
    """Inside `with RegisterRecordFunction(model):`, each submodule's forward is a `[pl][module]` range in the trace,
    named `{module class path}: {name in the model}`."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._records: dict[str, record_function] = {}
        self._handles: list[Any] = []

    def _enter(self, _module: nn.Module, inputs: Any, record_name: str) -> Any:
        record = record_function("[pl][module]" + record_name)
        record.__enter__()
        self._records[record_name] = record
        return inputs

    def _exit(self, _module: nn.Module, _inputs: Any, output: Any, record_name: str) -> Any:
        record = self._records.pop(record_name, None)
        if record is not None:
            record.__exit__(None, None, None)
        return output

    def __enter__(self) -> None:
        for name, module in self._model.named_modules():
            if not name:
                continue  # the model itself: its steps are recorded as actions already
            record_name = f"{type(module).__module__}.{type(module).__name__}: {name}"
            self._handles.append(module.register_forward_pre_hook(partial(self._enter, record_name=record_name)))
            self._handles.append(module.register_forward_hook(partial(self._exit, record_name=record_name)))

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class _StepSchedule:
    """The user's (or the default) schedule, fed a step count per kind of step (training, validation, ...), so
    validation steps do not advance training's schedule; each kind stops once its schedule saved a trace."""

    def __init__(self, schedule: Callable[[int], ProfilerAction]) -> None:
        self.schedule = schedule
        self.reset()

    def reset(self) -> None:
        self.counts = dict.fromkeys(_STEP_KINDS, 0)
        self.finished: set[str] = set()
        self.kind: str | None = None
        self.previous: ProfilerAction | None = None
        self.first_action: str | None = None

    @property
    def num_step(self) -> int:
        return self.counts[self.kind] if self.kind is not None else 0

    def __call__(self, _num_step: int) -> ProfilerAction:
        kind = self.kind
        if kind is None or kind in self.finished:
            return ProfilerAction.NONE
        # Validation steps of fit's sanity check do not count (Lightning counts them once training stepped).
        if kind != "validation_step" or not (self.first_action or "").endswith("on_fit_start") \
                or self.counts["training_step"] > 0:
            self.counts[kind] += 1
        action = self.schedule(self.counts[kind])
        if self.previous == ProfilerAction.RECORD and action == ProfilerAction.WARMUP:
            action = ProfilerAction.RECORD  # validation recorded inside a training warm-up: torch would refuse
        if action == ProfilerAction.RECORD_AND_SAVE:
            self.finished.add(kind)
        self.previous = action
        return action


class PyTorchProfiler(Profiler):
    """Profiles the operators the run executes with `torch.profiler` (CPU, and CUDA when available).

    Args:
        dirpath, filename: where the report goes (see `Profiler`); Chrome traces are written to `dirpath`.
        group_by_input_shapes: group the table's operators by input shape (needs `record_shapes=True`).
        emit_nvtx: emit NVTX ranges for `nvprof`/Nsight instead of recording (no table then).
        export_to_chrome: write a Chrome trace (`.pt.trace.json`, open in chrome://tracing or Perfetto) each time
            the schedule saves.
        row_limit: rows of the table (-1: all).
        sort_by_key: table order, one of `AVAILABLE_SORT_KEYS` (default: CUDA total time with CUDA, else CPU).
        record_module_names: label each submodule's forward in the trace with its name.
        table_kwargs: more arguments of `EventList.table` (not `sort_by` or `row_limit`).
        **profiler_kwargs: arguments of `torch.profiler.profile` (`schedule`, `activities`, `record_shapes`,
            `profile_memory`, `with_stack`, ...); the default schedule is `wait=1, warmup=1, active=3`.
    """

    STEP_FUNCTIONS = set(_STEP_KINDS)
    AVAILABLE_SORT_KEYS = {"cpu_time", "cuda_time", "cpu_time_total", "cuda_time_total", "cpu_memory_usage",
                           "cuda_memory_usage", "self_cpu_memory_usage", "self_cuda_memory_usage", "count"}

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None,
                 group_by_input_shapes: bool = False, emit_nvtx: bool = False, export_to_chrome: bool = True,
                 row_limit: int = 20, sort_by_key: str | None = None, record_module_names: bool = True,
                 table_kwargs: dict[str, Any] | None = None, **profiler_kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self._group_by_input_shapes = group_by_input_shapes and profiler_kwargs.get("record_shapes", False)
        self._emit_nvtx = emit_nvtx
        self._export_to_chrome = export_to_chrome
        self._row_limit = row_limit
        self._sort_by_key = sort_by_key or _default_sort_key(profiler_kwargs)
        self._record_module_names = record_module_names
        self._table_kwargs = dict(table_kwargs or {})
        self._profiler_kwargs = profiler_kwargs
        self.profiler: Any = None
        self.function_events: EventList | None = None
        self._lightning_module: Any = None  # set by the Trainer before each stage
        self._register: RegisterRecordFunction | None = None
        self._parent_profiler: Any = None
        self._recording_map: dict[str, record_function] = {}
        if self._sort_by_key not in self.AVAILABLE_SORT_KEYS:
            raise MisconfigurationException(f"Found sort_by_key: {self._sort_by_key}. Should be within "
                                            f"{sorted(self.AVAILABLE_SORT_KEYS)}.")
        valid_table_keys = set(inspect.signature(EventList.table).parameters) - {"self", "sort_by", "row_limit"}
        for key in self._table_kwargs:
            if key in ("sort_by", "row_limit"):
                raise KeyError(f"Found invalid table_kwargs key: {key}. Pass it as the profiler's own argument "
                               f"(`sort_by_key=` or `row_limit=`).")
            if key not in valid_table_keys:
                raise KeyError(f"Found invalid table_kwargs key: {key}. Should be within {sorted(valid_table_keys)}.")
        schedule = profiler_kwargs.get("schedule")
        if schedule is not None:
            if not callable(schedule):
                raise MisconfigurationException(f"Schedule should be a callable. Found: {schedule}")
            action = schedule(0)
            if not isinstance(action, ProfilerAction):
                raise MisconfigurationException(
                    f"Schedule should return a `torch.profiler.ProfilerAction`. Found: {action}")
        self._user_schedule = "schedule" in profiler_kwargs
        self._schedule: _StepSchedule | None = _StepSchedule(schedule or _default_schedule())
        self._has_on_trace_ready = "on_trace_ready" in profiler_kwargs
        self._export_to_flame_graph = profiler_kwargs.get("export_to_flame_graph", False)
        self._metric = profiler_kwargs.get("metric", "self_cpu_time_total")
        self._profiler_kwargs["schedule"] = self._schedule
        self._profiler_kwargs["activities"] = profiler_kwargs.get("activities") or _default_activities()
        self._profiler_kwargs["with_stack"] = profiler_kwargs.get("with_stack", False) or self._export_to_flame_graph

    # -- recording ----------------------------------------------------------------------------------

    def start(self, action_name: str) -> None:
        if self.profiler is None:
            if torch.autograd._profiler_enabled():
                torch.autograd._disable_profiler()  # left running by another profiler that never described
            if self._schedule is not None:
                self._schedule.first_action = action_name
            self._create_profiler()
            entered = self.profiler.__enter__()
            if entered is not None:
                self.profiler = entered
            if self._parent_profiler is not None:
                self._parent_profiler.__enter__()
        if self._lightning_module is not None and self._register is None and self._record_module_names:
            self._register = RegisterRecordFunction(self._lightning_module)
            self._register.__enter__()
        if self.profiler is not None and action_name not in self._recording_map:
            recording = record_function("[pl][profile]" + action_name)
            recording.__enter__()
            self._recording_map[action_name] = recording

    def stop(self, action_name: str) -> None:
        recording = self._recording_map.pop(action_name, None)
        if recording is not None:
            recording.__exit__(None, None, None)
        if self._emit_nvtx or self.profiler is None:
            return
        kind = next((kind for kind in _STEP_KINDS if action_name.endswith(kind)), None)
        if kind is None:
            return
        # Every step (training, validation, test, predict) advances the schedule of its own kind.
        if self._schedule is not None:
            self._schedule.kind = kind
            if self._too_few_steps():
                _warnings.warn("The PyTorch Profiler default schedule will be overridden as there is not enough "
                               "steps to properly record traces.")
                self._schedule = None
                self.profiler.schedule = torch.profiler.profiler._default_schedule_fn
        if not self._has_on_trace_ready:
            self.profiler.on_trace_ready = partial(self._export_trace, action_name)
        if self._schedule is not None:
            self.profiler.step_num = self._schedule.num_step
        self.profiler.step()
        self.profiler.add_metadata("Framework", "fulmen")

    def _export_trace(self, action_name: str, profiler: Any) -> None:
        if self.dirpath is None:
            rank_zero_warn("The PyTorchProfiler failed to export trace as `dirpath` is None")
            return
        if self._export_to_chrome:
            handler = tensorboard_trace_handler(str(self.dirpath),
                                               self._prepare_filename(action_name=action_name, extension=""))
            handler(profiler)
        if self._export_to_flame_graph:
            path = os.path.join(self.dirpath, self._prepare_filename(action_name=action_name, extension=".stack"))
            profiler.export_stacks(path, metric=self._metric)

    def _too_few_steps(self) -> bool:
        """The default schedule (wait 1, warm up 1, record 3) needs 5 steps; with fewer, every step is recorded."""
        if self._user_schedule or self._lightning_module is None:
            return False
        trainer = self._lightning_module.trainer
        kind = self._schedule.kind
        if kind == "training_step":
            total = trainer.num_training_batches
        elif kind == "validation_step":
            total = sum(trainer.num_val_batches) + sum(trainer.num_sanity_val_batches)
        elif kind == "test_step":
            total = sum(trainer.num_test_batches)
        else:
            total = sum(trainer.num_predict_batches)
        return total < 5

    # -- the report -----------------------------------------------------------------------------------

    def summary(self) -> str:
        if not self._profiler_kwargs.get("enabled", True) or self._emit_nvtx:
            return ""
        self._delete_profilers()
        if not self.function_events:
            return ""
        averages = self.function_events.key_averages(group_by_input_shapes=self._group_by_input_shapes)
        table = averages.table(sort_by=self._sort_by_key, row_limit=self._row_limit, **self._table_kwargs)
        return self._stats_to_str({"records": table})

    def _create_profiler(self) -> None:
        if self._emit_nvtx:
            if self._parent_profiler is None:
                self._parent_profiler = torch.cuda.profiler.profile()
            factory: Any = torch.autograd.profiler.emit_nvtx
        else:
            self._parent_profiler = None
            factory = torch.profiler.profile
        accepted = inspect.signature(factory.__init__).parameters
        self.profiler = factory(**{key: value for key, value in self._profiler_kwargs.items() if key in accepted})

    def _delete_profilers(self) -> None:
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            if not self._emit_nvtx:
                self.function_events = self.profiler.events()
            self.profiler = None
        if self._schedule is not None:
            self._schedule.reset()
        if self._parent_profiler is not None:
            self._parent_profiler.__exit__(None, None, None)
            self._parent_profiler = None
        if self._register is not None:
            self._register.__exit__(None, None, None)
            self._register = None

    def teardown(self, stage: str | None) -> None:
        self._delete_profilers()
        for action_name in list(self._recording_map):
            self.stop(action_name)
        self._recording_map = {}
        super().teardown(stage=stage)


def _default_schedule() -> Callable[[int], ProfilerAction]:
    # Skipping the first step and warming up one keeps the profiler's own start-up cost out of the trace.
    return torch.profiler.schedule(wait=1, warmup=1, active=3)


def _default_activities() -> list[ProfilerActivity]:
    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    return activities


def _default_sort_key(profiler_kwargs: dict[str, Any]) -> str:
    activities = profiler_kwargs.get("activities") or []
    cuda = ProfilerActivity.CUDA in activities or (not activities and torch.cuda.is_available())
    return f"{'cuda' if cuda else 'cpu'}_time_total"
