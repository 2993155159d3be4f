"""The profiled twins of HookDispatch's prebuilt events, used only while a profiler other than
`PassThroughProfiler` is active (chosen once at bind, so a run without a profiler pays nothing per step).

Action names are Lightning's, so reports read the same: `[Callback]{state_key}.{hook}`,
`[LightningModule]{class}.{hook}`, `[LightningDataModule]{class}.{hook}`, `[Strategy]{class}.{hook}`.
Like Lightning, a profiled run calls every callback's and the module's hook, overridden or not (the
defaults do nothing), so each appears in the report.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from fulmen.callbacks.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule


def action_name(hook: str, fn: Callable) -> str | None:
    """The report's name for `fn` run as hook `hook`, from the object it is bound to (None: not a hook owner)."""
    owner = getattr(fn.func if isinstance(fn, partial) else fn, "__self__", None)
    if isinstance(owner, Callback):
        return f"[Callback]{owner.state_key}.{hook}"
    if isinstance(owner, LightningModule):
        return f"[LightningModule]{type(owner).__name__}.{hook}"
    if isinstance(owner, LightningDataModule):
        return f"[LightningDataModule]{type(owner).__name__}.{hook}"
    return None


def strategy_action(strategy: Any, hook: str) -> str:
    return f"[Strategy]{type(strategy).__name__}.{hook}"


def profiled(profiler: Any, action: str | None, fn: Callable) -> Callable:
    """`fn` timed as `action` (returned as is when `action` is None)."""
    if action is None:
        return fn
    start, stop = profiler.start, profiler.stop

    def timed(*args: Any, **kwargs: Any) -> Any:
        start(action)
        try:
            return fn(*args, **kwargs)
        finally:
            stop(action)

    return timed


def profiled_event(profiler: Any, run: Any, trainer: Any, module: Any, name: str, callback_fns: list[Callable],
                   module_fn: Callable | None, module_action: str | None) -> Callable:
    """The event `name`: each callback's hook, then `module_fn`, each timed under its own action."""
    callbacks = [(action_name(name, fn), fn) for fn in callback_fns]
    start, stop = profiler.start, profiler.stop

    def event(*args: Any) -> Any:
        previous = run.hook_name
        run.hook_name = name
        try:
            for action, fn in callbacks:
                start(action)
                try:
                    fn(trainer, module, *args)
                finally:
                    stop(action)
            if module_fn is None:
                return None
            if module_action is None:
                return module_fn(*args)
            start(module_action)
            try:
                return module_fn(*args)
            finally:
                stop(module_action)
        finally:
            run.hook_name = previous

    return event


def profiled_call_as(dispatch: Any, profiler: Any) -> Callable:
    """`HookDispatch.call_as` that times the user code it runs under the owner's action name."""
    plain = type(dispatch).call_as.__get__(dispatch)

    def call_as(name: str, fn: Callable, *args: Any) -> Any:
        action = action_name(name, fn)
        if action is None:
            return plain(name, fn, *args)
        with profiler.profile(action):
            return plain(name, fn, *args)

    return call_as
