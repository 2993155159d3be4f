"""`torch.compile`d modules: running a compiled LightningModule, and checkpoint keys without `_orig_mod.`.

`torch.compile(module)` returns an `OptimizedModule` that wraps the module (as `_orig_mod`) without being a
LightningModule. The Trainer runs the wrapped LightningModule itself, with its `forward` replaced by the compiled
one, so hooks, `self.log` and the strategy see the real module while the model's computation stays compiled.

Compiling a submodule (`self.net = torch.compile(self.net)`, e.g. in `configure_model`) puts `_orig_mod.` into
its state-dict keys. Checkpoints store the keys without it, so they load into the uncompiled module (and into
a compiled one: loading maps the keys back onto whatever the module has).

`torch._dynamo` is never imported here: a compiled module can only exist once `torch.compile` has loaded it.
"""

from __future__ import annotations

import functools
import sys
from collections import OrderedDict
from typing import Any, Mapping

_COMPILED = "_orig_mod"


def _optimized_module_type() -> type | None:
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return getattr(eval_frame, "OptimizedModule", None)


def unwrap_compiled(model: Any, entry: str) -> Any:
    """The LightningModule inside a `torch.compile`d one, running its compiled `forward`; anything else as given.

    `forward` is compiled with the wrapper's settings (backend, mode, options). Passing the same wrapper again
    changes nothing; another compiled wrapper of the module replaces it.
    """
    optimized = _optimized_module_type()
    if optimized is None or not isinstance(model, optimized):
        return model
    from fulmen.core.module import LightningModule

    original = model._orig_mod
    if not isinstance(original, LightningModule):
        # Lightning raises a ValueError here too.
        raise ValueError(f"`Trainer.{entry}()` received a `torch.compile`d {type(original).__qualname__}, not a "
                         "compiled `fulmen.LightningModule`. Wrap the model in a LightningModule, then compile "
                         "that (or compile the model inside the LightningModule).")
    dynamo_ctx = model.dynamo_ctx
    context = original.__dict__.get("_compiler_ctx")
    if context is not None and context["dynamo_ctx"] is dynamo_ctx:
        return original
    # Lightning also compiles the step methods; with torch 2.13 its compiled `training_step` fails inside
    # `self.log` (dynamo cannot trace the signature check there), so only `forward` is compiled here.
    original._compiler_ctx = {"dynamo_ctx": dynamo_ctx}
    # A partial over the class's function rather than a bound method: `copy.deepcopy(module)` (e.g. an averaged
    # copy of the model) then gets a forward of its own instead of one that still runs the original's weights.
    original.forward = _CompiledForward(dynamo_ctx(type(original).forward), original)
    return original


class _CompiledForward(functools.partial):
    """The compiled forward installed on a module: copied with the module, never pickled (the compiled code
    cannot be), so e.g. `strategy="ddp_spawn"` says what to do instead of failing deep inside pickle."""

    def __deepcopy__(self, memo: dict) -> _CompiledForward:
        from copy import deepcopy

        return type(self)(self.func, deepcopy(self.args[0], memo))

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"A `torch.compile`d {type(self.args[0]).__name__} cannot be pickled (as `strategy="
                        "\"ddp_spawn\"` and other spawning launchers do). Use `strategy=\"ddp\"`, or compile inside "
                        "`configure_model` (e.g. `self.net = torch.compile(self.net)`), which runs in every process.")


def _strip(name: str) -> str:
    return ".".join(part for part in name.split(".") if part != _COMPILED)


def strip_compiled_keys(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """`state_dict` with every `_orig_mod.` segment removed from its keys (the same object when none has one)."""
    if not any(_COMPILED in key for key in state_dict):
        return state_dict
    stripped: Any = OrderedDict((_strip(key), value) for key, value in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:  # per-module versions (e.g. BatchNorm's) that `load_state_dict` reads
        stripped._metadata = OrderedDict((_strip(prefix), value) for prefix, value in metadata.items())
    return stripped


def match_compiled_keys(module: Any, state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """`state_dict`'s keys renamed to `module`'s own, with or without `_orig_mod.` as its submodules have it.

    Keys the module does not have are kept (stripped) for `load_state_dict` to report as unexpected.
    """
    own_compiled = any(_COMPILED in name for name, _ in module.named_modules())
    if not own_compiled and not any(_COMPILED in key for key in state_dict):
        return state_dict
    state_dict = strip_compiled_keys(state_dict)
    if not own_compiled:
        return state_dict
    own = {_strip(key): key for key in module.state_dict(keep_vars=True)}
    renamed: Any = OrderedDict((own.get(key, key), value) for key, value in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        modules = {_strip(name): name for name, _ in module.named_modules()}
        renamed._metadata = OrderedDict((modules.get(prefix, prefix), value) for prefix, value in metadata.items())
    return renamed
