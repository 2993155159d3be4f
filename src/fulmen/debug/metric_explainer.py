"""The metric explainer behind `trainer.explain_metrics()`: for every published metric key, where it came from.

Owns: turning the trainer's metric dicts and the per-key records of `self.log` (`results/log_origin.py`)
into an explanation (hook, call site, on_step/on_epoch, reduction and batch-size weighting, syncing,
produced names, destinations, value). Reads only; it never runs a collective or changes a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fulmen.results.log_origin import LogOrigin, short_call_site
from fulmen.results.logging_rules import runs_once_per_epoch

if TYPE_CHECKING:
    from fulmen.results.result_collection import LoggedValue
    from fulmen.trainer.trainer import Trainer

_REDUCTION_WORDS = {"sum": "sum", "max": "maximum", "min": "minimum"}


@dataclass
class ProducedKey:
    """One key a logged name produced, its current value and the dicts it is in.

    Attributes:
        key: the key as it appears in the trainer's dicts (e.g. `loss_epoch`, `acc/dataloader_idx_1`).
        value: its current value (from `callback_metrics`, else `logged_metrics`, else `progress_bar_metrics`).
        destinations: where it went: "logger", "progress bar", "callbacks" (`callback_metrics`), in that order.
    """

    key: str
    value: float | None
    destinations: list[str]


@dataclass
class LoggedKeyExplanation:
    """How one logged name (per hook) was logged and what it produced; `lines` is its text form."""

    name: str
    hook: str
    call_site: tuple[str, int, str] | None
    call: str
    when: str
    reduction: str
    sync: str
    naming: str
    produced: list[ProducedKey]
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.name}  logged in `{self.hook}` by {short_call_site(self.call_site)}",
               f"    call       {self.call}",
               f"    when       {self.when}",
               f"    reduction  {self.reduction}",
               f"    sync       {self.sync}",
               f"    names      {self.naming}"]
        width = max((len(produced.key) for produced in self.produced), default=0)
        for i, produced in enumerate(self.produced):
            label = "    keys       " if i == 0 else " " * 15
            value = "(no value)" if produced.value is None else f"{produced.value:.6g}"
            out.append(f"{label}{produced.key:<{width}} = {value}  -> {', '.join(produced.destinations)}")
        if not self.produced:
            out.append("    keys       (none published yet)")
        out.extend(f"    note       {note}" for note in self.notes)
        return out


@dataclass
class MetricsExplanation:
    """What `trainer.explain_metrics()` returns: one entry per logged name, in the order first logged.

    `str(explanation)` is the printed text. `unexplained` holds keys in the trainer's dicts that no
    `self.log` call in this process produced (restored from a checkpoint, or handed back without a record).
    """

    header: str
    entries: list[LoggedKeyExplanation]
    unexplained: dict[str, float | None]

    def __str__(self) -> str:
        lines = [self.header]
        for entry in self.entries:
            lines.append("")
            lines.extend(entry.lines())
        if self.unexplained:
            lines.append("")
            lines.append("Keys with no `self.log` record in this process (restored from a checkpoint or handed back "
                         "by another process):")
            for key, value in self.unexplained.items():
                lines.append(f"    {key} = {'(no value)' if value is None else f'{value:.6g}'}")
        if not self.entries and not self.unexplained:
            lines.append("Nothing has been logged in this run.")
        return "\n".join(lines)

    def __getitem__(self, key: str) -> LoggedKeyExplanation:
        """The entry that produced `key` (a logged name or one of the keys it produced)."""
        for entry in self.entries:
            if entry.name == key or any(produced.key == key for produced in entry.produced):
                return entry
        raise KeyError(f"{key!r} was not produced by any `self.log` call in this run; logged names: "
                       f"{[entry.name for entry in self.entries]}.")


def explain_metrics(trainer: Trainer) -> MetricsExplanation:
    """Explain every key of `trainer.callback_metrics`, `logged_metrics` and `progress_bar_metrics` (no printing:
    `trainer.explain_metrics()` prints it on rank zero)."""
    router = trainer._metrics
    callback, logged, bar = trainer.callback_metrics, trainer.logged_metrics, trainer.progress_bar_metrics
    context = _Context(trainer)
    entries: list[LoggedKeyExplanation] = []
    claimed: set[str] = set()
    sources = [(origin, results.values.get(key), False) for results in (router.train_results, router.eval_results)
               for key, origin in results.origins.items()]
    sources += [(origin, None, True) for origin in router.spawned_origins]
    for origin, live, spawned in sources:
        produced = []
        for name in _candidate_names(origin):
            destinations = [label for label, metrics in (("logger", logged), ("progress bar", bar),
                                                            ("callbacks", callback)) if name in metrics]
            if destinations:
                claimed.add(name)
                value = next(metrics[name] for metrics in (callback, logged, bar) if name in metrics)
                produced.append(ProducedKey(name, _to_float(value), context.label(origin, name, destinations)))
        entries.append(_explain(origin, live, spawned, produced, context))
    unexplained = {key: _to_float(metrics[key]) for metrics in (callback, logged, bar) for key in metrics
                   if key not in claimed}
    header = (f"Metrics explained: rank {trainer.global_rank} of {trainer.world_size}, epoch {trainer.current_epoch},"
              f" global step {trainer.global_step}")
    return MetricsExplanation(header, entries, unexplained)


class _Context:
    """Trainer facts shared by every entry: ranks, loggers, logging cadence."""

    def __init__(self, trainer: Trainer) -> None:
        self.world_size = trainer.world_size
        self.loggers = ", ".join(type(logger).__name__ for logger in trainer.loggers)
        self.log_every_n_steps = trainer.log_every_n_steps

    def label(self, origin: LogOrigin, key: str, destinations: list[str]) -> list[str]:
        """Destinations with, for the logger, which logger(s) and when they receive the key."""
        if "logger" not in destinations:
            return destinations
        if not self.loggers:
            when = "no logger configured: trainer.logged_metrics only"
        elif _is_step_key(origin, key):
            when = (f"{self.loggers}, every {self.log_every_n_steps} training steps (log_every_n_steps)"
                    if origin.training
                    else f"{self.loggers}, after every batch")
        else:
            when = f"{self.loggers}, at epoch end"
        return [f"logger ({when})" if label == "logger" else label for label in destinations]


def _candidate_names(origin: LogOrigin) -> list[str]:
    on_step, on_epoch = origin.options["on_step"], origin.options["on_epoch"]
    if on_step and on_epoch:
        return [origin.step_name, origin.epoch_name, origin.key]
    return [origin.key]


def _is_step_key(origin: LogOrigin, key: str) -> bool:
    options = origin.options
    return key == origin.step_name if options["on_step"] and options["on_epoch"] else options["on_step"]


def _explain(origin: LogOrigin, live: LoggedValue | None, spawned: bool, produced: list[ProducedKey],
             context: _Context) -> LoggedKeyExplanation:
    options, given = origin.options, origin.given
    notes = []
    if not options["logger"]:
        notes.append("logger=False: never sent to the loggers (not in trainer.logged_metrics)")
    if spawned:
        notes.append("logged in the spawned processes; rank 0 handed back its callback_metrics and this record")
    elif live is None:
        notes.append("not logged since the epoch (or evaluation run) it was last logged in; the values are from then")
    return LoggedKeyExplanation(
        name=origin.key, hook=origin.hook, call_site=origin.call_site, call=_call(origin),
        when=", ".join(f"{flag}={options[flag]} ({'given' if flag in given else f'default in {origin.hook}'})"
                       for flag in ("on_step", "on_epoch")),
        reduction=_reduction(origin, live), sync=_sync(origin, context.world_size), naming=_naming(origin),
        produced=produced, notes=notes,
    )


def _call(origin: LogOrigin) -> str:
    arguments = "".join(f", {name}={value}" for name, value in origin.given.items())
    if origin.via_log_dict:
        return f"self.log_dict({{..., {origin.name!r}: ...}}{arguments})"
    return f"self.log({origin.name!r}, ...{arguments})"


def _reduction(origin: LogOrigin, live: LoggedValue | None) -> str:
    on_epoch = origin.options["on_epoch"]
    if origin.metric is not None:
        epoch = "epoch value = its compute() over the epoch's updates" if on_epoch else "on_epoch=False"
        return (f"torchmetrics {origin.metric[0]}: step value = its forward() on the batch, {epoch} "
                "(reduce_fx and batch_size are not used)")
    if not on_epoch:
        return "none: step values only (on_epoch=False)"
    reduce = origin.options["reduce"]
    if runs_once_per_epoch(origin.hook):
        return f"none: logged once per epoch, the epoch value is the logged value (several calls: their {reduce})"
    if reduce != "mean":
        return f"epoch value = {_REDUCTION_WORDS[reduce]} of the values logged this epoch (batch size not used)"
    batch_size = origin.given.get("batch_size")
    source = (f"batch_size passed to self.log, {batch_size} in its first call" if batch_size is not None
              else "batch size inferred from each batch")
    weight = f"; total weight {live.weight} this epoch" if live is not None and live.weight else ""
    return f"epoch value = mean weighted by batch size ({source}{weight})"


def _sync(origin: LogOrigin, world_size: int) -> str:
    given = origin.given
    if origin.metric is not None:
        _, on_compute, on_step = origin.metric
        return (f"by the metric itself (sync_on_compute={on_compute}, dist_sync_on_step={on_step}); "
                "sync_dist does not apply")
    if "rank_zero_only" in given:
        return "never (rank_zero_only=True: logged by rank 0 alone, a collective would wait for the others)"
    if not origin.options["sync_dist"]:
        return ("not synced (sync_dist=False): each rank keeps its own value" if world_size > 1
                else "not synced (sync_dist=False; 1 process)")
    group = "the default group (all ranks)" if origin.sync_dist_group is None else f"group {origin.sync_dist_group}"
    if world_size == 1:
        return "sync_dist=True, but only 1 process: nothing to reduce"
    reduce, parts = origin.options["reduce"], []
    if origin.options["on_step"]:
        parts.append(f"each step value = {reduce} of the ranks' values")
    if origin.options["on_epoch"]:
        parts.append("epoch value = mean over every rank's samples (sum of value x batch size / sum of batch sizes)"
                     if reduce == "mean" else f"epoch value = {reduce} of the ranks' epoch values")
    return f"sync_dist=True, across {group}: {'; '.join(parts)}"


def _naming(origin: LogOrigin) -> str:
    options = origin.options
    if options["on_step"] and options["on_epoch"]:
        text = (f"on_step and on_epoch: '{origin.step_name}' (step value), '{origin.epoch_name}' (epoch value), "
                f"and '{origin.key}' for callbacks (the newer of the two)")
    else:
        text = f"'{origin.key}' ({'step' if options['on_step'] else 'epoch'} value)"
    if origin.dataloader_idx is not None:
        suffix = f"/dataloader_idx_{origin.dataloader_idx}"
        if origin.key.endswith(suffix):
            text += f"; '{suffix}' added: logged while dataloader {origin.dataloader_idx} ran"
        else:
            text += f"; logged while dataloader {origin.dataloader_idx} ran, no suffix added (add_dataloader_idx=False)"
    return text


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
