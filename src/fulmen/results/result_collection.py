"""ResultCollection: what `self.log` stored in one loop (training, validation or test), per (hook, key).

Owns: step values, running epoch reductions weighted by batch size, turning them into the three
views Lightning exposes (callback, logger, progress bar), and each key's `LogOrigin` (recorded once per
run, for `trainer.explain_metrics()`). Values stay tensors on their device: nothing
here forces a device sync; conversion to Python numbers happens where a value is shown or written.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from fulmen.results.log_origin import LogOrigin, record_origin
from fulmen.utilities.data import extract_batch_size
from fulmen.utilities.exceptions import MisconfigurationException

_REDUCE_NAMES = {"mean": "mean", "avg": "mean", "sum": "sum", "max": "max", "min": "min"}
# Python's own `sum`, `max` and `min` count as their torch functions, as in Lightning.
_REDUCE_FUNCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min", sum: "sum",
                     max: "max", min: "min"}


def reduce_name(reduce_fx: Any) -> str:
    """Normalize `reduce_fx` (a name, a torch function or Python's `sum`/`max`/`min`) to "mean", "sum", "max" or
    "min"."""
    if isinstance(reduce_fx, str):
        name = _REDUCE_NAMES.get(reduce_fx.lower())
    else:
        name = _REDUCE_FUNCTIONS.get(reduce_fx)
    if name is None:
        raise MisconfigurationException(  # Lightning's words first (tests match them), then the fix
            f"Only `self.log(..., reduce_fx={{min,max,mean,sum}})` are supported. Found: {reduce_fx!r}. Use 'mean', "
            "'sum', 'max' or 'min' (or torch.mean, torch.sum, torch.max, torch.min); for a custom reduction log a "
            "`torchmetrics.Metric` instead."
        )
    return name


class LoggedValue:
    """One logged key in one hook: its options, last step value and running epoch reduction."""

    __slots__ = ("name", "hook", "on_step", "on_epoch", "prog_bar", "logger", "reduce", "sync_dist",
                 "sync_dist_group", "dataloader_idx", "enable_graph", "signature", "last", "total", "weight",
                 "metric", "synced", "step_name", "epoch_name")

    def __init__(self, name: str, hook: str, signature: tuple, on_step: bool, on_epoch: bool, prog_bar: bool,
                 logger: bool, reduce: str, sync_dist: bool, sync_dist_group: Any, dataloader_idx: int | None,
                 enable_graph: bool) -> None:
        self.name, self.hook, self.signature = name, hook, signature
        self.on_step, self.on_epoch, self.prog_bar, self.logger = on_step, on_epoch, prog_bar, logger
        self.reduce, self.sync_dist, self.sync_dist_group = reduce, sync_dist, sync_dist_group
        self.dataloader_idx, self.enable_graph = dataloader_idx, enable_graph
        # The names of the step and epoch values, built once: with both on, '_step'/'_epoch' go before any
        # '/dataloader_idx_N' suffix (Lightning's `loss_step/dataloader_idx_1`).
        base, suffix = name, ""
        if dataloader_idx is not None and name.endswith(f"/dataloader_idx_{dataloader_idx}"):
            base, suffix = name.rsplit("/", 1)
            suffix = "/" + suffix
        self.step_name = f"{base}_step{suffix}" if on_epoch else name
        self.epoch_name = f"{base}_epoch{suffix}" if on_step else name
        self.last: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.weight = 0
        self.metric: Any = None  # a torchmetrics.Metric, which reduces (and syncs) itself
        self.synced: torch.Tensor | None = None  # the epoch value reduced across processes, once computed

    def update(self, value: torch.Tensor, batch_size: Callable[[], int]) -> None:
        self.synced = None
        # The step value users and callbacks see never holds the graph; with `enable_graph` only the
        # epoch reduction keeps it.
        self.last = value.detach()
        if not self.on_epoch:
            return
        if not self.enable_graph:
            value = self.last
        reduce = self.reduce
        if reduce == "mean":
            size = batch_size()
            if self.total is None:
                self.total = value * size
            elif self.enable_graph:
                self.total = self.total + value * size
            else:
                self.total.add_(value, alpha=size)
            self.weight += size
        elif self.total is None:
            self.total = value.clone()
        elif reduce == "sum":
            self.total = self.total + value if self.enable_graph else self.total.add_(value)
        elif reduce == "max":
            self.total = torch.maximum(self.total, value)
        else:
            self.total = torch.minimum(self.total, value)

    def update_metric(self, metric: Any) -> None:
        """A torchmetrics object: its step value is what its last `forward` returned, its epoch value `compute()`."""
        self.metric = metric
        cached = getattr(metric, "_forward_cache", None)
        self.last = cached.detach() if isinstance(cached, torch.Tensor) else None
        self.total = None  # computed lazily, once per epoch

    def local_epoch_value(self) -> torch.Tensor | None:
        if self.metric is not None:
            if self.total is None:
                self.total = self.metric.compute().detach()
            return self.total
        if self.total is None:
            return None
        return self.total / self.weight if self.reduce == "mean" else self.total

    def epoch_value(self) -> torch.Tensor | None:
        """The synced epoch value once `ResultCollection.sync_epoch` ran, else this process's own."""
        if self.synced is not None:
            return self.synced
        return self.local_epoch_value()


class ResultCollection:
    """Everything logged by one loop since its last reset."""

    def __init__(self, training: bool) -> None:
        self.training = training
        self.values: dict[tuple[str, str], LoggedValue] = {}
        # Where each key was first logged in this run; kept across epochs (`reset`), dropped by `clear`.
        self.origins: dict[tuple[str, str], LogOrigin] = {}
        self.epoch_end_reached = False
        self._batch: Any = None
        self._batch_size: int | None = None

    def clear(self) -> None:
        """`reset`, and forget where keys were logged (a new run, or the end of the sanity check)."""
        self.reset()
        self.origins = {}

    def reset(self) -> None:
        """Forget every logged value (at the start of an epoch or evaluation run); reset logged metric objects."""
        for entry in self.values.values():
            if entry.metric is not None:
                entry.metric.reset()
        self.values = {}
        self.epoch_end_reached = False
        self._batch = None
        self._batch_size = None

    def on_batch(self, batch: Any) -> None:
        """Remember the batch so a batch size can be inferred from it if a mean needs one."""
        self._batch = batch
        self._batch_size = None

    def _current_batch_size(self) -> int:
        if self._batch_size is None:
            # Outside a batch (e.g. on_validation_start) a logged value counts once, as in Lightning.
            self._batch_size = 1 if self._batch is None else extract_batch_size(self._batch)
        return self._batch_size

    def log(self, hook: str, name: str, value: Any, *, on_step: bool, on_epoch: bool, prog_bar: bool,
            logger: bool, reduce: str, sync_dist: bool, sync_dist_group: Any, dataloader_idx: int | None,
            enable_graph: bool, batch_size: int | None,
            reduce_across_processes: Callable[..., torch.Tensor] | None = None) -> None:
        key = (hook, name)
        signature = (on_step, on_epoch, prog_bar, logger, reduce, sync_dist, enable_graph, dataloader_idx)
        entry = self.values.get(key)
        if entry is None:
            entry = LoggedValue(name, hook, signature, on_step, on_epoch, prog_bar, logger, reduce, sync_dist,
                                sync_dist_group, dataloader_idx, enable_graph)
            self.values[key] = entry
            if key not in self.origins:
                # Once per key per run, never per call: the stack walk stays off the per-step path.
                self.origins[key] = record_origin(entry, value, self.training)
        elif entry.signature != signature:
            if entry.dataloader_idx != dataloader_idx:
                # Lightning refuses this too: two dataloaders' values would be reduced into one key.
                raise MisconfigurationException(
                    f"`self.log({name!r}, ..., add_dataloader_idx=False)` was called in `{hook}` for dataloader "
                    f"{entry.dataloader_idx} and for dataloader {dataloader_idx}: both would write the same key. "
                    "Use a different name per dataloader (e.g. with `dataloader_idx` in it), or drop "
                    "`add_dataloader_idx=False`."
                )
            raise MisconfigurationException(
                f"You called `self.log({name}, ...)` twice in `{hook}` with different arguments, which is not "
                f"allowed (on_step, on_epoch, prog_bar, logger, reduce_fx, sync_dist, enable_graph = "
                f"{entry.signature[:7]} then {signature[:7]}). Log each key with one set of arguments per hook."
            )
        if not isinstance(value, torch.Tensor):
            entry.update_metric(value)
            return
        entry.update(value, (lambda: batch_size) if batch_size is not None else self._current_batch_size)
        if sync_dist and on_step and reduce_across_processes is not None:
            # Every process logs at the same points, so the step value can be synced here (Lightning does too);
            # the epoch reduction keeps accumulating this process's own values.
            entry.last = reduce_across_processes(entry.last, reduce, sync_dist_group)

    def reset_metric_objects(self) -> None:
        """Reset the logged torchmetrics objects once their epoch values are computed (kept for the metric dicts):
        Lightning resets them when an epoch or evaluation run ends, so none carries state out of `fit`/`test`."""
        for entry in self.values.values():
            if entry.metric is not None:
                if entry.on_epoch:
                    entry.local_epoch_value()
                entry.metric.reset()

    def sync_epoch(self, reduce_across_processes: Callable[..., torch.Tensor]) -> None:
        """Reduce `sync_dist` epoch values across processes. Every process must call this at the same point:
        reading metrics (which only rank zero may do) never runs a collective."""
        for entry in self.values.values():
            if entry.sync_dist and entry.on_epoch and entry.metric is None and entry.synced is None:
                total = entry.total
                if total is None:
                    continue
                if entry.reduce != "mean":
                    entry.synced = reduce_across_processes(total, entry.reduce, entry.sync_dist_group)
                    continue
                # Lightning's synced mean counts every rank's samples (sum of value * batch size over the sum of
                # batch sizes), not every rank's mean; both sums travel in one collective.
                dtype = torch.promote_types(total.dtype, torch.float32)
                pair = torch.stack((total.to(dtype), total.new_tensor(float(entry.weight), dtype=dtype)))
                summed = reduce_across_processes(pair, "sum", entry.sync_dist_group)
                entry.synced = (summed[0] / summed[1]).to(total.dtype)

    def views(self, on_step: bool, dataloader_idx: int | None = None,
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Return `(callback, logged, progress_bar)` dicts for step values (`on_step`) or epoch values.

        With `dataloader_idx`, only values logged for that dataloader (or for none) are included.
        """
        callback: dict[str, torch.Tensor] = {}
        logged: dict[str, torch.Tensor] = {}
        progress_bar: dict[str, torch.Tensor] = {}
        for entry in self.values.values():
            if dataloader_idx is not None and entry.dataloader_idx not in (None, dataloader_idx):
                continue
            if on_step:
                if not entry.on_step or entry.last is None:
                    continue
                value = entry.last
                forked_name = entry.step_name
            else:
                if not entry.on_epoch:
                    continue
                value = entry.epoch_value()
                if value is None:
                    continue
                forked_name = entry.epoch_name
            if entry.logger:
                logged[forked_name] = value
            # Step values of evaluation loops never reach callback metrics (Lightning's rule).
            if self.training or not on_step:
                callback[entry.name] = value
                callback[forked_name] = value
            if entry.prog_bar:
                progress_bar[forked_name] = value
        return callback, logged, progress_bar


