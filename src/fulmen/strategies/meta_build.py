"""Building the layers `configure_model` makes on the meta device (no memory) under FSDP, when that loses nothing.

A layer built on the meta device has no values: after sharding, each owning module's `reset_parameters()` draws
them. That is only faithful when the layers are torch's own (whose `reset_parameters` is their whole
initialisation) and nothing else touched their values while they were built. So the build is watched: an
in-place write to a meta tensor from outside torch's own layer code (`nn.init.normal_(self.head.weight)`,
`weight.data.fill_(0)`), a user layer owning tensors, a tensor shared by two layers (tied weights), a real tensor
next to meta ones, or an error (reading a meta tensor's value) make it fall back: the module is put back as it
was, the random generators rewound, and `configure_model` runs again on the real device, as Lightning builds it.
"""

from __future__ import annotations

import copy
import os
import random
import sys
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCH_LAYERS_DIR = os.path.join(_TORCH_DIR, "nn", "modules") + os.sep
# In-place by name but value-preserving: marking, not writing.
_HARMLESS = {"requires_grad_", "retain_grad", "share_memory_"}


class MetaBuild:
    """One attempt to run `configure_model` on the meta device for `module`.

    `attempt(build, meta_context)` returns None when the layers can be initialised after sharding, else why not;
    then `rewind()` puts the module and the random generators back as they were, for a build on the real device.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._snapshot = _Snapshot(module)

    @staticmethod
    def eligible(module: nn.Module) -> bool:
        """Only a module without tensors yet: layers made in `__init__` are real, and one model must not mix."""
        return not any(True for _ in module.parameters()) and not any(True for _ in module.buffers())

    def attempt(self, build: Callable[[], None], meta_context: Callable[[], Any]) -> str | None:
        watch = _InitWatch()
        try:
            with meta_context(), watch:
                build()
        except Exception as error:  # noqa: BLE001 - any failure on meta means: build it for real (errors recur)
            return f"it failed on the meta device ({type(error).__name__}: {error})"
        return watch.reason or _unfaithful_layers(self._module)

    def rewind(self) -> None:
        self._snapshot.restore()


class _InitWatch(TorchFunctionMode):
    """Notes the first in-place write to a meta tensor made by code other than torch's own layers."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.reason is None and _writes(func) and _touches_meta(args, kwargs):
            caller = _first_caller_outside_torch()
            if caller is not None:
                name = getattr(func, "__name__", str(func))
                self.reason = f"it sets values itself ({name} at {caller})"
        return func(*args, **(kwargs or {}))


def _writes(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    if name in _HARMLESS:
        return False
    if name == "__set__":  # `tensor.data = ...`
        return True
    return name == "__setitem__" or (name.endswith("_") and not name.endswith("__"))


def _touches_meta(args: Any, kwargs: Any) -> bool:
    values = list(args) + list((kwargs or {}).values())
    return any(isinstance(value, torch.Tensor) and value.is_meta for value in values)


def _first_caller_outside_torch() -> str | None:
    """`file:line` of the code that asked for the write, or None when it is torch's own layer code."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_TORCH_LAYERS_DIR):
            return None
        if not filename.startswith(_TORCH_DIR) and filename != __file__:
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _unfaithful_layers(module: nn.Module) -> str | None:
    """Why `reset_parameters` after sharding would not reproduce the build (None: it would)."""
    owners: dict[int, list[str]] = {}
    for name, layer in module.named_modules():
        own = [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]
        if not own:
            continue
        if not all(t.is_meta for t in own):
            return f"`{name or 'the module'}` holds tensors that are not on the meta device"
        is_torch_layer = type(layer).__module__.startswith("torch.nn.")
        if not is_torch_layer or not callable(getattr(layer, "reset_parameters", None)):
            return (f"`{name}` ({type(layer).__name__}) owns parameters but is not one of torch's layers with "
                    "`reset_parameters()`")
        for tensor in own:
            owners.setdefault(id(tensor), []).append(name)
    for names in owners.values():
        if len(names) > 1:
            return f"`{names[0]}` and `{names[1]}` share a tensor (tied weights)"
    return None


class _Snapshot:
    """Each existing submodule's attributes (with copies of its tables: parameters, buffers, children, hooks), and the random generators'
    states, to put back after a build on meta that cannot be used."""

    def __init__(self, module: nn.Module) -> None:
        self._modules = [(m, dict(vars(m)), {key: copy.copy(value) for key, value in vars(m).items()
                                              if isinstance(value, (dict, set, list))})
                         for m in module.modules()]
        self._torch_rng = torch.get_rng_state()
        self._cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        self._python_rng = random.getstate()
        numpy = sys.modules.get("numpy")
        self._numpy_rng = numpy.random.get_state() if numpy is not None else None

    def restore(self) -> None:
        for module, attributes, tables in self._modules:
            vars(module).clear()
            vars(module).update(attributes)
            vars(module).update({key: copy.copy(table) for key, table in tables.items()})
        torch.set_rng_state(self._torch_rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state_all(self._cuda_rng)
        random.setstate(self._python_rng)
        if self._numpy_rng is not None:
            sys.modules["numpy"].random.set_state(self._numpy_rng)

