"""Apply a function to every leaf of a nested batch; move batches between devices."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import torch


def apply_to_collection(data: Any, dtype: type | tuple, function: Callable, *args: Any, **kwargs: Any) -> Any:
    """Return `data` with `function` applied to every element of type `dtype`, keeping the nesting.

    Lists, tuples, namedtuples, mappings and dataclass instances are rebuilt; other leaves pass through.
    """
    if isinstance(data, dtype):
        return function(data, *args, **kwargs)
    return _rebuild(data, lambda value: apply_to_collection(value, dtype, function, *args, **kwargs))


def _rebuild(data: Any, recurse: Callable[[Any], Any]) -> Any:
    if isinstance(data, Mapping):
        items = [(key, recurse(value)) for key, value in data.items()]
        if isinstance(data, defaultdict):
            return type(data)(data.default_factory, items)
        if type(data) in (dict, OrderedDict):
            return type(data)(items)
        try:
            return type(data)(items)
        except TypeError:
            return dict(items)
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(recurse(value) for value in data))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        items = [recurse(value) for value in data]
        return items if isinstance(data, list) else type(data)(items)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        # Copy rather than re-construct: `__post_init__` must not run again and `init=False` fields keep values.
        result = copy.copy(data)
        for field in dataclasses.fields(data):
            if hasattr(data, field.name):
                object.__setattr__(result, field.name, recurse(getattr(data, field.name)))
        return result
    return data


def move_data_to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor in `batch` (and any leaf with a `.to(device)` method) to `device`."""
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if type(batch) in (list, tuple) and all(type(item) is torch.Tensor and item.device == device for item in batch):
        return batch  # the common (inputs, targets) batch already on the device: nothing to rebuild
    # non_blocking only helps host->CUDA copies from pinned memory; for CPU targets it must stay off.
    non_blocking = device.type == "cuda"

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value if value.device == device else value.to(device, non_blocking=non_blocking)
        mover = getattr(value, "to", None)
        if callable(mover) and not isinstance(value, (str, bytes, type)):
            moved = mover(device)
            return value if moved is None else moved  # an in-place `to()` that returns None keeps the object
        return _rebuild(value, move)

    return move(batch)
