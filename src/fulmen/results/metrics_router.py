"""MetricsRouter: the front end of `self.log`, and where reduced values go.

Owns: validating `self.log` arguments, which ResultCollection is active, the trainer's three metric
dicts (`callback_metrics`, `logged_metrics`, `progress_bar_metrics`) and when loggers receive values.
The dicts are refreshed from the active collection when read or at loop boundaries, never per step,
so logging costs no device sync unless someone looks.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from fulmen.results.log_origin import LogOrigin
from fulmen.results.logging_rules import resolve_log_options
from fulmen.results.result_collection import ResultCollection, reduce_name
from fulmen.trainer.run import Run
from fulmen.trainer.state import TrainerStatus, logging_due
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.state import TrainerState


class MetricsRouter:
    """Receives `self.log` calls and publishes reduced values to the trainer's dicts and the loggers.

    Args:
        state: read for `should_stop` (log now, the run ends) and `current_epoch` (sent with epoch values).
        strategy: reduces values logged with `sync_dist=True` across processes.
        loggers: where logged values go; `trainer.loggers` is this list (the Trainer reads and sets it here).
        log_every_n_steps: how often training step values reach the loggers.
    """

    def __init__(self, state: TrainerState, strategy: Strategy, loggers: list[Any], log_every_n_steps: int) -> None:
        self._state = state
        self._strategy = strategy
        self.loggers = loggers
        self._log_every_n_steps = log_every_n_steps
        self._run = Run()  # whose `hook_name` tells `self.log` which hook is calling
        self.train_results = ResultCollection(training=True)
        self.eval_results = ResultCollection(training=False)
        self.active: ResultCollection | None = None
        self.dataloader_idx: int | None = None  # set only while several eval dataloaders run
        self._callback: dict[str, torch.Tensor] = {}
        self._logged: dict[str, torch.Tensor] = {}
        self._progress_bar: dict[str, torch.Tensor] = {}
        self._metric_attributes: dict[int, str] | None = None
        self.spawned_origins: list[LogOrigin] = []  # where a spawned rank 0's keys were logged (`explain_metrics`)
        # Sees every dict of numbers read from the metric tensors, with what they are for (the non-finite guard).
        self.check_numbers: Any = _no_check

    # -- the self.log front end -------------------------------------------------------------------

    def log(self, module: Any, name: str, value: Any, *, prog_bar: bool, logger: bool | None,
            on_step: bool | None, on_epoch: bool | None, reduce_fx: Any, enable_graph: bool, sync_dist: bool,
            sync_dist_group: Any, add_dataloader_idx: bool, batch_size: int | None,
            metric_attribute: str | None, rank_zero_only: bool) -> None:
        results = self.active
        hook = self._run.hook_name
        if results is None:
            resolve_log_options(hook, name, on_step, on_epoch)  # a hook that never allows logging says so first
            raise MisconfigurationException(
                f"`self.log({name!r}, ...)` was called inside `{hook}`, where no loop is collecting values. "
                "Log from a training, validation or test step or epoch hook."
            )
        on_step, on_epoch = resolve_log_options(hook, name, on_step, on_epoch)
        if add_dataloader_idx and "/dataloader_idx_" in name:
            raise MisconfigurationException(
                f"You called `self.log` with the key `{name}` but it should not contain information about "
                "`dataloader_idx` when `add_dataloader_idx=True`: the index is appended when there are several "
                "dataloaders. Drop it from the key, or pass `add_dataloader_idx=False`."
            )
        if not _is_torchmetric(value):
            value = _as_tensor(name, value, module)
        elif metric_attribute is None:
            self._check_metric_attribute(module, name, value)
        dataloader_idx = self.dataloader_idx
        if dataloader_idx is not None and add_dataloader_idx:
            name = f"{name}/dataloader_idx_{dataloader_idx}"
        if logger and not self.loggers:  # asked for explicitly (None is the default, which stays quiet)
            rank_zero_warn(f"You called `self.log({name!r}, ..., logger=True)` but have no logger configured. You can "
                           "enable one by doing `Trainer(logger=ALogger(...))`")  # Lightning's words
        if logger is None:
            logger = True
        if rank_zero_only:
            # Logged from rank zero alone (Lightning's `rank_zero_only`): a collective would wait forever for the
            # other ranks, so the value is never synced.
            sync_dist = False
        results.log(
            hook, name, value, on_step=on_step, on_epoch=on_epoch, prog_bar=prog_bar, logger=logger,
            reduce=reduce_name(reduce_fx), sync_dist=sync_dist, sync_dist_group=sync_dist_group,
            dataloader_idx=dataloader_idx, enable_graph=enable_graph, batch_size=batch_size,
            reduce_across_processes=self._reduce if sync_dist else None,
        )

    def _check_metric_attribute(self, module: Any, name: str, metric: Any) -> None:
        """A logged torchmetrics object must be an attribute of the module (Lightning's rule), or be named by
        `metric_attribute`; the lookup runs once per run."""
        if self._metric_attributes is None:
            torchmetrics = sys.modules["torchmetrics"]
            self._metric_attributes = {id(child): child_name for child_name, child in module.named_modules()
                                       if isinstance(child, torchmetrics.Metric)}
        if id(metric) not in self._metric_attributes:
            known = list(self._metric_attributes.values())
            hint = (f"You can fix this by calling `self.log({name}, ..., metric_attribute=name)` where `name` is one "
                    f"of {known}" if known else "You can fix this by setting an attribute for the metric in your "
                    "`LightningModule` (e.g. `self.accuracy = ...`)")
            raise MisconfigurationException(  # Lightning's words
                f"Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged as {name!r}. "
                f"{hint}."
            )

    # -- the trainer's three dicts ----------------------------------------------------------------

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        self._refresh()
        return self._callback

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        self._refresh()
        return self._logged

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        self._refresh()
        # One device sync per shown value, only when the bar (or a user) reads them.
        numbers = {key: _to_number(value) for key, value in self._progress_bar.items()}
        self.check_numbers(numbers, "progress bar")
        return numbers

    def update_callback_metrics(self, metrics: dict[str, torch.Tensor], origins: Sequence[LogOrigin] = ()) -> None:
        """Add `metrics` to `callback_metrics` (what a spawned rank 0 reported back to the launching process),
        with the records of where they were logged."""
        self._callback.update(metrics)
        self.spawned_origins = list(origins)

    def log_origins(self) -> list[LogOrigin]:
        """Where every key logged in this run came from (`trainer.explain_metrics()` reads them)."""
        return [*self.train_results.origins.values(), *self.eval_results.origins.values()]

    def _refresh(self) -> None:
        # Only while a run is going (Lightning: while a loop is active): after it, the dicts are the user's to
        # change - a popped or overwritten key stays so.
        results = self.active
        if results is not None and self._state.status == TrainerStatus.RUNNING:
            self._fold(results, epoch=results.epoch_end_reached)

    def _fold(self, results: ResultCollection, epoch: bool) -> None:
        """Copy the latest step values (and, at epoch end, the epoch values over them) into the dicts."""
        for on_step in ((True, False) if epoch else (True,)):
            callback, logged, progress_bar = results.views(on_step=on_step)
            self._callback.update(callback)
            self._logged.update(logged)
            self._progress_bar.update(progress_bar)

    def _reduce(self, value: torch.Tensor, reduce: str, group: Any) -> torch.Tensor:
        return self._strategy.reduce(value, group=group, reduce_op=reduce)

    def start_run(self, run: Run) -> None:
        """A new run: forget every stored metric and collection; `self.log` checks hooks against `run`."""
        self._run = run
        self.clear()
        self.active = None

    def clear(self) -> None:
        """Drop every stored metric (after the sanity check, or when a new stage starts)."""
        self._callback, self._logged, self._progress_bar = {}, {}, {}
        self._metric_attributes = None
        self.spawned_origins = []
        self.train_results.clear()
        self.eval_results.clear()

    # -- loop boundaries ----------------------------------------------------------------------------

    def activate(self, results: ResultCollection | None) -> None:
        """Make `results` the collection that `self.log` writes to, publishing the previous one first."""
        self._refresh()
        self.active = results

    def start_train_epoch(self) -> None:
        self._refresh()
        self.train_results.reset()
        self.active = self.train_results

    def train_step_done(self, step: int, accumulating: bool) -> None:
        """After a training batch: send step values to the loggers every `log_every_n_steps`."""
        if accumulating or not self.loggers:
            return
        if logging_due(step, self._log_every_n_steps, self._state.should_stop):
            _, logged, _ = self.train_results.views(on_step=True)
            self._logged.update(logged)
            self.send_to_loggers(logged, step)

    def train_epoch_end_reached(self) -> None:
        """From here until the next epoch, training values read as their epoch reductions (synced now, on
        every process, so callbacks reading them on one rank run no collective)."""
        self.train_results.epoch_end_reached = True
        self.train_results.sync_epoch(self._reduce)

    def eval_epoch_end_reached(self) -> None:
        self.eval_results.epoch_end_reached = True
        self.eval_results.sync_epoch(self._reduce)

    def train_epoch_done(self, step: int) -> None:
        """After `on_train_epoch_end`: publish epoch values and send them to the loggers at `step`.

        `step` is `batches_that_stepped - 1`: Lightning logs epoch values at the step of the epoch's last
        step values, although its counter has already moved past that batch.
        """
        results = self.train_results
        results.sync_epoch(self._reduce)  # again: values logged in on_train_epoch_end
        self._fold(results, epoch=True)
        _, logged, _ = results.views(on_step=False)
        self.send_to_loggers(logged, step)
        results.reset_metric_objects()

    def start_evaluation(self) -> None:
        self._refresh()
        self.eval_results.reset()
        self.active = self.eval_results

    def eval_step_done(self, step: int) -> None:
        """After an evaluation batch: send values logged with on_step=True to the loggers at `step`.

        Only the loggers (and `logged_metrics`) see them: Lightning never puts eval step values into
        `callback_metrics`, which get the epoch reductions at the end.
        """
        if not self.loggers:
            return
        _, logged, _ = self.eval_results.views(on_step=True, dataloader_idx=self.dataloader_idx)
        if logged:
            self._logged.update(logged)
            self.send_to_loggers(logged, step, add_epoch=False)

    def evaluation_done(self, num_dataloaders: int, step: int, sanity_checking: bool) -> list[dict[str, float]]:
        """Reduce the evaluation epoch, publish it, and return one dict of logged values per dataloader."""
        results = self.eval_results
        results.epoch_end_reached = True
        results.sync_epoch(self._reduce)  # values logged in on_validation_epoch_end / on_test_epoch_end
        if sanity_checking:
            return []
        self._fold(results, epoch=True)
        per_dataloader = []
        for idx in range(num_dataloaders):
            _, logged, _ = results.views(on_step=False, dataloader_idx=idx if num_dataloaders > 1 else None)
            per_dataloader.append(logged)
        everything = {key: value for logged in per_dataloader for key, value in logged.items()}
        self.send_to_loggers(everything, step)
        results.reset_metric_objects()
        results_out = [{key: _to_number(value) for key, value in logged.items()} for logged in per_dataloader]
        for numbers in results_out:
            self.check_numbers(numbers, "results")
        return results_out

    def send_to_loggers(self, metrics: dict[str, torch.Tensor], step: int, add_epoch: bool = True) -> None:
        """Convert to Python numbers (a device sync, once per logging step) and hand to every logger."""
        loggers = self.loggers
        if not metrics or not loggers:
            return
        numbers_out = {key: _to_number(value) for key, value in metrics.items()}
        self.check_numbers(numbers_out, "loggers")
        if add_epoch:
            # Lightning: a logged "step" value is the loggers' step (and then no "epoch" is added).
            logged_step = numbers_out.pop("step", None)
            if logged_step is None:
                numbers_out.setdefault("epoch", self._state.current_epoch)
            else:
                step = int(logged_step)
        for logger in loggers:
            logger.log_metrics(metrics=numbers_out, step=step)  # by keyword, as Lightning calls it
            logger.save()


def log_dict_items(dictionary: Any) -> Any:
    """The (name, value) pairs `self.log_dict(dictionary)` logs: a mapping's items, or a torchmetrics
    `MetricCollection`'s metrics under the names it reports (prefix/postfix applied)."""
    torchmetrics = sys.modules.get("torchmetrics")  # never imported by fulmen itself
    if torchmetrics is not None and isinstance(dictionary, torchmetrics.MetricCollection):
        # With compute groups the members share their state, which is not copied into each (as Lightning asks).
        options = {"copy_state": False} if getattr(dictionary, "_enable_compute_groups", False) else {}
        return dictionary.items(keep_base=False, **options)
    if isinstance(dictionary, Mapping):
        return dictionary.items()
    raise ValueError(f"`self.log_dict` expects a mapping of names to values (or a torchmetrics MetricCollection); "
                     f"received {type(dictionary).__name__}.")


def _is_torchmetric(value: Any) -> bool:
    # Checked through sys.modules so fulmen never imports torchmetrics itself.
    torchmetrics = sys.modules.get("torchmetrics")
    return torchmetrics is not None and isinstance(value, torchmetrics.Metric)


def _as_tensor(name: str, value: Any, module: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(  # Lightning's words first
                f"`self.log({name}, {value})` was called, but the tensor must have a single element (its shape is "
                f"{tuple(value.shape)}). Reduce it first, e.g. `self.log({name!r}, value.mean())`."
            )
        if value.ndim:
            value = value.reshape(())
        if not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        return value
    if isinstance(value, numbers.Number):
        return torch.tensor(float(value), device=module.device)
    if isinstance(value, dict):
        raise ValueError(f"`self.log({name}, {value})` was called, but dict values cannot be logged: use "
                         "`self.log_dict(value)` for several values.")
    raise ValueError(
        f"`self.log({name}, {value!s:.50})` was called, but `{type(value).__name__}` values cannot be logged: only "
        "Python numbers, single-element tensors and torchmetrics Metrics can."
    )


def _no_check(numbers: dict[str, Any], source: str) -> None:
    pass


def _to_number(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) else value
