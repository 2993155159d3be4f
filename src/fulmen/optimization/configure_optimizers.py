"""Turn what `configure_optimizers()` returned into optimizers and LR scheduler configs.

Owns: every return shape Lightning accepts, the `lr_scheduler_config` defaults, and the errors for
anything else. Does not own: stepping (`scheduler_stepping.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer

from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

_ACCEPTED = (
    "an optimizer; a list/tuple of optimizers; two lists ([optimizers], [schedulers or lr_scheduler_config "
    "dicts]); a dict with an 'optimizer' key and optional 'lr_scheduler' and 'monitor' keys; a list/tuple of "
    "such dicts; or None"
)
_CONFIG_KEYS = {"scheduler", "interval", "frequency", "monitor", "strict", "name", "reduce_on_plateau", "opt_idx"}


@dataclass
class LRSchedulerConfig:
    """A scheduler and when to step it (Lightning's `lr_scheduler_config`)."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


def parse_optimizers(output: Any, automatic: bool = True) -> tuple[list[Optimizer], list[LRSchedulerConfig], str | None]:
    """Return `(optimizers, scheduler_configs, monitor)` for `configure_optimizers()`'s `output`.

    Under manual optimization (`automatic=False`) the user steps schedulers, so nothing about stepping
    them (a plateau monitor) is required, as in Lightning.
    """
    if output is None:
        rank_zero_warn("`LightningModule.configure_optimizers` returned `None`, this fit will run with no optimizer")
        return [], [], None
    if isinstance(output, Optimizer):
        return [output], [], None
    if isinstance(output, Mapping):
        return _parse_dicts([output], automatic)
    if isinstance(output, (list, tuple)):
        if not output:
            raise _bad_output(output)
        if all(isinstance(item, Optimizer) for item in output):
            return list(output), [], None
        if all(isinstance(item, Mapping) for item in output):
            return _parse_dicts(list(output), automatic)
        if len(output) == 2 and isinstance(output[0], (list, tuple)) and all(isinstance(o, Optimizer) for o in output[0]):
            optimizers = list(output[0])
            # Any scheduler object is taken here (one stepped by the user, or by `lr_scheduler_step`);
            # `check_scheduler_api` says what a scheduler must have.
            schedulers = output[1] if isinstance(output[1], (list, tuple)) else [output[1]]
            return optimizers, [_scheduler_config(item, None, automatic) for item in schedulers], None
    raise _bad_output(output)


def _bad_output(output: Any) -> MisconfigurationException:
    return MisconfigurationException(f"Unknown configuration for model optimizers: `configure_optimizers` returned "
                                     f"{_describe(output)}; expected {_ACCEPTED}.")


def _describe(value: Any, depth: int = 0) -> str:
    """A compact shape of what was returned: `tuple[list[SGD], str]`, `dict(keys=['lr_scheduler'])`."""
    if isinstance(value, (list, tuple)) and depth < 3:
        items = ", ".join(_describe(item, depth + 1) for item in value[:6])
        return f"{type(value).__name__}[{items}{', ...' if len(value) > 6 else ''}]"
    if isinstance(value, Mapping):
        return f"dict(keys={sorted(map(str, value))})"
    return type(value).__name__


def _parse_dicts(dicts: list[Mapping], automatic: bool) -> tuple[list[Optimizer], list[LRSchedulerConfig], str | None]:
    optimizers: list[Optimizer] = []
    configs: list[LRSchedulerConfig] = []
    monitor = None
    for item in dicts:
        if "optimizer" not in item:
            raise KeyError(
                f"A dict returned by `configure_optimizers` has no 'optimizer' key (keys: {sorted(item)}); "
                "it must look like {'optimizer': opt, 'lr_scheduler': ..., 'monitor': ...}."
            )
        unknown = set(item) - {"optimizer", "lr_scheduler", "monitor"}
        if unknown:
            rank_zero_warn(f"Found unsupported keys in the optimizer configuration: {unknown}; they are ignored "
                           "(allowed: 'optimizer', 'lr_scheduler', 'monitor').", category=RuntimeWarning)
        optimizer = item["optimizer"]
        if not isinstance(optimizer, Optimizer):
            raise MisconfigurationException(
                f"The 'optimizer' returned by `configure_optimizers` is {type(optimizer).__name__}; expected a "
                "`torch.optim.Optimizer`."
            )
        optimizers.append(optimizer)
        monitor = item.get("monitor", monitor)
        if item.get("lr_scheduler") is not None:
            configs.append(_scheduler_config(item["lr_scheduler"], item.get("monitor"), automatic))
    return optimizers, configs, monitor


def _scheduler_config(item: Any, monitor: str | None, automatic: bool) -> LRSchedulerConfig:
    if not automatic:
        return _manual_scheduler_config(item)
    if isinstance(item, Mapping):
        _warn_unknown_config_keys(item)
        if "scheduler" not in item:
            raise _no_scheduler_key(item)
        interval = item.get("interval", "epoch")
        if interval not in ("epoch", "step"):
            raise MisconfigurationException(
                f'The "interval" key in lr scheduler dict must be "step" or "epoch" but is "{interval}".'
            )
        frequency = item.get("frequency", 1)
        if not isinstance(frequency, int) or frequency < 1:
            raise MisconfigurationException(
                f"`lr_scheduler_config['frequency']={frequency!r}` is invalid; use an int >= 1."
            )
        scheduler = item["scheduler"]
        config = LRSchedulerConfig(
            scheduler=scheduler, name=item.get("name"), interval=interval, frequency=frequency,
            monitor=item.get("monitor"), strict=item.get("strict", True),
            reduce_on_plateau=item.get("reduce_on_plateau", _is_plateau(scheduler)),
        )
        if config.reduce_on_plateau and config.monitor is None:
            raise MisconfigurationException(
                "The lr scheduler dict must include a monitor when a `ReduceLROnPlateau` scheduler is used. For "
                "example: {'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'monitor': 'val_loss'}}."
            )
        if _is_one_cycle(scheduler) and interval == "epoch":
            rank_zero_warn("A `OneCycleLR` scheduler is using 'interval': 'epoch'. Are you sure you didn't mean "
                           "'interval': 'step'?", category=RuntimeWarning)
        return config
    # A bare scheduler: only a plateau scheduler takes the top-level 'monitor' (as in Lightning).
    if not _is_plateau(item):
        return LRSchedulerConfig(scheduler=item)
    if monitor is None:
        raise MisconfigurationException(
            "`configure_optimizers` must include a monitor when a `ReduceLROnPlateau` scheduler is used. For "
            "example: {'optimizer': optimizer, 'lr_scheduler': scheduler, 'monitor': 'val_loss'}."
        )
    return LRSchedulerConfig(scheduler=item, monitor=monitor, reduce_on_plateau=True)


def _manual_scheduler_config(item: Any) -> LRSchedulerConfig:
    """Manual optimization: the user steps the scheduler; keys about automatic stepping are dropped with a warning."""
    if not isinstance(item, Mapping):
        return LRSchedulerConfig(scheduler=item)
    if "scheduler" not in item:
        raise _no_scheduler_key(item)
    ignored = [key for key in item if key in ("reduce_on_plateau", "monitor", "strict")]
    if ignored:
        rank_zero_warn(f"The lr scheduler dict contains the key(s) {ignored}, but the keys will be ignored. You need "
                       "to call `lr_scheduler.step()` manually in manual optimization.", category=RuntimeWarning)
    _warn_unknown_config_keys(item)
    return LRSchedulerConfig(scheduler=item["scheduler"], name=item.get("name"), interval=item.get("interval", "epoch"),
                             frequency=item.get("frequency", 1))


def _warn_unknown_config_keys(item: Mapping) -> None:
    unknown = set(item) - _CONFIG_KEYS
    if unknown:
        rank_zero_warn(f"Found unsupported keys in the lr scheduler dict: {unknown}. HINT: remove them from the output "
                       f"of `configure_optimizers` (allowed: {sorted(_CONFIG_KEYS)}).", category=RuntimeWarning)


def _no_scheduler_key(item: Mapping) -> MisconfigurationException:
    return MisconfigurationException(
        f'The lr scheduler dict must have the key "scheduler" with its item being an lr scheduler; '
        f"{dict(item)!r:.120} has none. Add the scheduler instance under 'scheduler'."
    )


def check_schedulers_attached(optimizers: list[Optimizer], configs: list[LRSchedulerConfig]) -> None:
    """Every scheduler must drive one of the optimizers `configure_optimizers` returned (as Lightning checks)."""
    for config in configs:
        optimizer = getattr(config.scheduler, "optimizer", None)
        if optimizer is not None and not any(optimizer is returned for returned in optimizers):
            raise MisconfigurationException(
                "Some schedulers are attached with an optimizer that wasn't returned from `configure_optimizers`: "
                f"`{type(config.scheduler).__name__}` steps a `{type(optimizer).__name__}` that is not among them. "
                "Return that optimizer too, or build the scheduler on a returned one."
            )


def check_scheduler_api(configs: list[LRSchedulerConfig], custom_step: bool, automatic: bool = True) -> None:
    """Schedulers must be torch's, or the module must override `lr_scheduler_step` to drive them.

    Under manual optimization the user steps them, so any object with a state dict is accepted (as in Lightning).
    """
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

    for config in configs:
        scheduler = config.scheduler
        name = type(scheduler).__name__
        if not (callable(getattr(scheduler, "state_dict", None)) and callable(getattr(scheduler, "load_state_dict", None))):
            raise TypeError(f"The provided lr scheduler `{name}` is invalid. It should have `state_dict` and "
                            "`load_state_dict` methods defined (checkpoints save it with them).")
        if automatic and not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)) and not custom_step:
            raise MisconfigurationException(
                f"The provided lr scheduler `{name}` doesn't follow PyTorch's LRScheduler API. You should override "
                "the `LightningModule.lr_scheduler_step(scheduler, metric)` hook with your own logic if you are using "
                "a custom LR scheduler."
            )


def _is_one_cycle(scheduler: Any) -> bool:
    from torch.optim.lr_scheduler import OneCycleLR

    return isinstance(scheduler, OneCycleLR)


def _is_plateau(scheduler: Any) -> bool:
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return isinstance(scheduler, ReduceLROnPlateau)
