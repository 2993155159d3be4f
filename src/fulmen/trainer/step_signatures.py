"""How user methods are called: Lightning inspects step and batch-hook signatures and passes what they accept.

Owns: the `batch_idx` / `dataloader_idx` rules and the check for hooks Lightning 2.0 removed. Each runs once
per run or loop, never per batch.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from fulmen.trainer.hook_events import REMOVED_HOOKS
from fulmen.trainer.stages import STAGES
from fulmen.utilities.rank_zero import rank_zero_warn


def takes_batch_idx(step: Callable) -> bool:
    """Lightning's rule: pass `batch_idx` if the step names it, takes `*args`, or has two or more positionals."""
    try:
        parameters = inspect.signature(step).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (any(p.name == "batch_idx" for p in positional) or len(positional) >= 2
            or any(p.kind == p.VAR_POSITIONAL for p in parameters))


def without_batch_idx(step: Callable) -> Callable:
    def step_without_batch_idx(batch: Any, batch_idx: int, *rest: Any) -> Any:
        return step(batch, *rest)

    return step_without_batch_idx


def check_removed_hooks(module: LightningModule) -> None:
    for removed, replacement in REMOVED_HOOKS.items():
        if not callable(getattr(module, removed, None)):
            continue
        message = (f"`{type(module).__name__}.{removed}` was removed in Lightning 2.0 and fulmen never calls it. "
                   f"Move its code to `{replacement}`; to use step outputs there, keep them in a list on the module.")
        if removed in ("training_epoch_end", "validation_epoch_end", "test_epoch_end"):
            raise NotImplementedError(message)
        rank_zero_warn(message)


def check_dataloader_idx(module: Any, stage: str, several: bool) -> None:
    """Before a loop runs: step and batch hooks take `dataloader_idx` exactly when there are several loaders."""
    info = STAGES[stage]
    prefix, names = info.loader_prefix, (info.step_method, *info.batch_hooks)
    owner = type(module).__name__
    for name in names:
        try:
            parameters = inspect.signature(getattr(module, name)).parameters
        except (TypeError, ValueError):
            continue
        named = parameters.get("dataloader_idx")
        if several and named is None and not any(p.kind == p.VAR_POSITIONAL for p in parameters.values()):
            raise RuntimeError(f"There are several `{prefix}_dataloader`s, but `{owner}.{name}()` has no "
                               "`dataloader_idx` argument to tell them apart. Add `dataloader_idx=0` to it.")
        if not several and named is not None and named.default is inspect.Parameter.empty:
            raise RuntimeError(f"There is a single `{prefix}_dataloader`, so `{owner}.{name}()` is called without "
                               "`dataloader_idx`. Remove the argument or give it a default: `dataloader_idx=0`.")
