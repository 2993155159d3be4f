"""HookTracer: a record of every hook call of a run (who, which hook, in which stage, epoch and batch).

`HookDispatch` asks for it once per run, at `start()`; while a tracer is set, `bind()` builds every event
from traced hooks (each user function wrapped once, at bind) and calls every hook of every owner, as
Lightning does (the defaults do nothing). Without a tracer nothing is wrapped, so an untraced run pays
nothing per step. Records are plain dicts:

    {"run": 0, "fn": "fit", "stage": "train", "epoch": 0, "batch_idx": 1, "dataloader_idx": None,
     "depth": 1, "owner": "callback[0]", "owner_class": "MyCallback", "hook": "on_before_backward"}

`stage` is `trainer.state.stage` when the hook ran ("train", "sanity_check", "validate", "test",
"predict"); `batch_idx` is the batch the call belongs to (None outside batches); `depth` counts the traced
calls it runs inside (training_step runs inside `optimizer_step`'s closure: depth 1); `owner` is
"module", "datamodule", "callback[i]" (index in `trainer.callbacks`) or "strategy".
"""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Any, Callable

from fulmen.callbacks.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.debug.hook_tree import render_tree

# Where batch hooks and step methods receive `batch_idx` (the module's arguments; callbacks get two more first).
_BATCH_ARG = {f"on_{stage}_batch_{edge}": (1 if edge == "start" else 2)
              for stage in ("train", "validation", "test", "predict") for edge in ("start", "end")}
_BATCH_ARG.update({name: 1 for name in ("training_step", "validation_step", "test_step", "predict_step")})
_TRANSFER = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
# Hooks that belong to the batch being run even at depth 0.
_IN_BATCH = frozenset(_BATCH_ARG) | frozenset(_TRANSFER) | {
    "on_before_backward", "backward", "on_after_backward", "on_before_optimizer_step", "configure_gradient_clipping",
    "on_before_zero_grad", "optimizer_zero_grad", "optimizer_step", "lr_scheduler_step"}
_JSON_FORMAT = "fulmen-hook-trace/1"


class HookTracer:
    """Records every hook call of the runs of the Trainer it is given to (`Trainer(trace_hooks=tracer)`).

    Args:
        print_tree: print the tree of each run when it ends (global rank 0).
        path: write all records as JSON to this file when each run ends (global rank 0).
    """

    def __init__(self, print_tree: bool = False, path: str | os.PathLike | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.print_tree = print_tree
        self.path = None if path is None else os.fspath(path)
        self._trainer: Any = None
        self._callbacks: list[Any] = []
        self._run = -1
        self._depth = 0
        self._batch: tuple[int, int | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_trainer"], state["_callbacks"] = None, []  # set again by `begin` in a spawned process
        return state

    # -- what HookDispatch calls (once per run) -----------------------------------------------------

    def begin(self, trainer: Any) -> None:
        """A new run of `trainer` starts: records from here on carry the next run number."""
        self._trainer, self._run, self._depth, self._batch = trainer, self._run + 1, 0, None
        self._callbacks = []

    def bound(self, callbacks: list[Any]) -> None:
        """The run's callbacks are merged: `callback[i]` names index `i` of this list."""
        self._callbacks = list(callbacks)

    def wrap(self, hook: str, fn: Callable, owner: Any = None) -> Callable:
        """`fn` run as `hook`, recorded on entry; `owner` defaults to the object `fn` is bound to."""
        owner = _bound_to(fn) if owner is None else owner
        label, owner_class = self._label(owner), type(owner).__name__
        position = _BATCH_ARG.get(hook)
        if position is not None and isinstance(owner, Callback):
            position += 2  # callbacks receive (trainer, pl_module, ...) first
        ends_batch = hook.endswith("_batch_end")
        starts_batch = hook.endswith("_batch_start")
        record = self._record

        def traced(*args: Any, **kwargs: Any) -> Any:
            if position is None:
                record(hook, label, owner_class, None, None)
            else:
                batch_idx = args[position]
                dataloader_idx = args[position + 1] if len(args) > position + 1 else None
                record(hook, label, owner_class, batch_idx, dataloader_idx, starts_batch)
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if ends_batch:
                    self._batch = None

        traced.__self__ = owner  # type: ignore[attr-defined]  # the profiler names actions by it
        return traced

    def wrap_call_as(self, call_as: Callable, data_owner: Callable[[str], Any]) -> Callable:
        """`HookDispatch.call_as` (stage, data, mode and checkpoint hooks) recording each call it runs.

        `data_owner(name)`: who a hook set as a plain function on an instance (`model.val_dataloader = ...`,
        `LightningDataModule.from_datasets`) belongs to.
        """
        record = self._record

        def traced_call_as(name: str, fn: Callable, *args: Any) -> Any:
            owner = _bound_to(fn)
            if owner is None:
                owner = data_owner(name)
            record(name, self._label(owner), type(owner).__name__, None, None)
            self._depth += 1
            try:
                return call_as(name, fn, *args)
            finally:
                self._depth -= 1

        return traced_call_as

    def end(self) -> None:
        """The run ended (its teardown ran, or it failed): print or write as asked, on global rank 0 only."""
        trainer = self._trainer
        if trainer is not None and getattr(trainer, "global_rank", 0) != 0:
            return
        if self.print_tree:
            print(self.tree(run=self._run))
        if self.path is not None:
            self.to_json(self.path)

    # -- reading ------------------------------------------------------------------------------------

    def tree(self, run: int | None = None) -> str:
        """The records (of run number `run`, or all) as an indented tree: entry point > epoch > batch > call.

        Consecutive calls of one hook on several owners share a line; a batch whose calls repeat the
        previous batch's is folded into a "same as" line.
        """
        records = self.records if run is None else [r for r in self.records if r["run"] == run]
        return render_tree(records)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write `{"format": "fulmen-hook-trace/1", "records": [...]}` to `path`."""
        with open(path, "w", encoding="utf-8") as file:
            json.dump({"format": _JSON_FORMAT, "records": self.records}, file, indent=1)
            file.write("\n")

    @staticmethod
    def read_json(path: str | os.PathLike) -> list[dict[str, Any]]:
        """The records a `to_json` file holds."""
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if not isinstance(data, dict) or data.get("format") != _JSON_FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a hook trace written by `HookTracer.to_json` "
                             f"(expected a JSON object with \"format\": \"{_JSON_FORMAT}\").")
        return data["records"]

    def clear(self) -> None:
        """Forget all records."""
        self.records.clear()

    # -- recording ----------------------------------------------------------------------------------

    def _record(self, hook: str, owner: str, owner_class: str, batch_idx: int | None,
                dataloader_idx: int | None, starts_batch: bool = False) -> None:
        trainer = self._trainer
        state = trainer.state
        records = self.records
        if starts_batch:
            self._batch = (batch_idx, dataloader_idx)
            # The batch was moved to the device before its start hook: those transfer calls belong to it.
            for earlier in reversed(records):
                if earlier["hook"] not in _TRANSFER or earlier["batch_idx"] is not None or earlier["run"] != self._run:
                    break
                earlier["batch_idx"], earlier["dataloader_idx"] = batch_idx, dataloader_idx
        elif batch_idx is None and self._batch is not None and (self._depth or hook in _IN_BATCH):
            batch_idx, dataloader_idx = self._batch
        fn, stage = state.fn, state.stage
        records.append({"run": self._run, "fn": getattr(fn, "value", fn), "stage": getattr(stage, "value", stage),
                        "epoch": trainer.current_epoch, "batch_idx": batch_idx, "dataloader_idx": dataloader_idx,
                        "depth": self._depth, "owner": owner, "owner_class": owner_class, "hook": hook})

    def _label(self, owner: Any) -> str:
        if isinstance(owner, Callback):
            for index, callback in enumerate(self._callbacks):
                if callback is owner:
                    return f"callback[{index}]"
            return "callback"
        if isinstance(owner, LightningModule):
            return "module"
        if isinstance(owner, LightningDataModule):
            return "datamodule"
        from fulmen.strategies.strategy import Strategy

        if isinstance(owner, Strategy):
            return "strategy"
        return type(owner).__name__


def _bound_to(fn: Callable) -> Any:
    return getattr(fn.func if isinstance(fn, partial) else fn, "__self__", None)


def tracer_from_flag(trace_hooks: Any) -> HookTracer | None:
    """`Trainer(trace_hooks=...)`: False/None (off), True (print each run's tree), a path (write JSON), a HookTracer."""
    if trace_hooks is None or trace_hooks is False:
        return None
    if trace_hooks is True:
        return HookTracer(print_tree=True)
    if isinstance(trace_hooks, HookTracer):
        return trace_hooks
    if isinstance(trace_hooks, (str, os.PathLike)) and os.fspath(trace_hooks):
        return HookTracer(path=trace_hooks)
    raise TypeError(
        f"`Trainer(trace_hooks={trace_hooks!r})` is not supported. Pass True (print each run's hook tree), a file "
        "path (write the records as JSON), a `fulmen.debug.HookTracer` (read `.records` yourself), or False.")
