"""Data helpers under Lightning's path `utilities.data`: lengths of dataloaders, batch sizes, worker counts.

Owns: the one batch-size inference `self.log` uses (`extract_batch_size`), and length checks the
Trainer and users share. Does not own: resolving or iterating the Trainer's dataloaders
(`trainer/data_source.py`, `loops/batch_iterator.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch
from torch.utils.data import DataLoader, IterableDataset

from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy

BType = Union[torch.Tensor, str, Mapping[Any, "BType"], Iterable["BType"]]
"""What a batch may be: a tensor, a string, or a mapping/iterable of those, nested."""


def has_iterable_dataset(dataloader: object) -> bool:
    """Whether `dataloader` has a `dataset` that is a `torch.utils.data.IterableDataset`."""
    return isinstance(getattr(dataloader, "dataset", None), IterableDataset)


def sized_len(dataloader: object) -> int | None:
    """`len(dataloader)`, or None when it has no length (no `__len__`, or one that raises)."""
    try:
        return len(dataloader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def _batch_sizes(batch: Any) -> Generator[int | None, None, None]:
    if isinstance(batch, torch.Tensor):
        yield 1 if batch.ndim == 0 else batch.size(0)
    elif isinstance(batch, (Iterable, Mapping)) and not isinstance(batch, str):
        for item in batch.values() if isinstance(batch, Mapping) else batch:
            yield from _batch_sizes(item)
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        for field in dataclasses.fields(batch):
            yield from _batch_sizes(getattr(batch, field.name))
    else:
        yield None  # a leaf that is not a tensor (a number, a string inside a list, ...)


def extract_batch_size(batch: BType) -> int:
    """The batch size of `batch`: the first dimension of the first tensor found in it (1 for a scalar).

    Searches mappings, iterables and dataclasses depth first. Warns when the leaves disagree (as
    Lightning, a non-tensor leaf after the first size counts as a disagreement) and keeps the first size.

    Raises:
        MisconfigurationException: no tensor in `batch`.
    """
    message = ("Could not infer the batch size from the batch: simplify its structure, or pass it as "
               "`self.log(..., batch_size=N)`.")
    found: int | None = None
    try:
        for size in _batch_sizes(batch):
            if found is None:
                found = size
            elif size != found:
                rank_zero_warn(f"The batch size could not be inferred unambiguously from the batch; using {found}. "
                               "Pass `self.log(..., batch_size=N)` to weight epoch means correctly.")
                break
    except RecursionError:
        raise RecursionError(message) from None
    if found is None:
        raise MisconfigurationException(message)
    return found


def has_len_all_ranks(dataloader: object, strategy: Strategy,
                      allow_zero_length_dataloader_with_multiple_devices: bool = False) -> bool:
    """Whether `dataloader` has a length; with several processes, also checks no rank has an empty one.

    Warns when the length is zero on every rank, or when an `IterableDataset` defines `__len__` (each
    worker must then shard its data, or the length is wrong).

    Raises:
        RuntimeError: this rank's dataloader is empty while others are not, unless
            `allow_zero_length_dataloader_with_multiple_devices=True` (then it warns).
    """
    local_length = sized_len(dataloader)
    if local_length is None:
        return False
    total = strategy.reduce(torch.tensor(local_length, device=strategy.root_device), reduce_op="sum")
    name = type(dataloader).__name__
    if total == 0:
        rank_zero_warn(f"Total length of `{name}` across ranks is zero. Please make sure this was your intention.")
    if total > 0 and local_length == 0:
        if not allow_zero_length_dataloader_with_multiple_devices:
            raise RuntimeError(f"`{name}` within local rank has zero length. Please make sure that it returns at "
                               "least 1 batch, or set `allow_zero_length_dataloader_with_multiple_devices = True` "
                               "on the LightningModule or LightningDataModule.")
        rank_zero_warn(f"Total length of `{name}` across ranks is zero, but local rank has zero length. "
                       "Please be cautious of uneven batch length.")
    if has_iterable_dataset(dataloader):
        warn_iterable_with_length()
    return True


def warn_iterable_with_length() -> None:
    """Lightning's warning for a sized IterableDataset (its length is a guess once several workers read it)."""
    rank_zero_warn("Your `IterableDataset` has `__len__` defined. In combination with multi-process data loading (when "
                   "num_workers > 1), `__len__` could be inaccurate if each worker is not configured independently to "
                   "avoid having duplicate data.")


def check_workers(dataloader: object, name: str, num_processes: int, reloads: bool) -> None:
    """Lightning's hints about a DataLoader's workers: persistent workers under the spawn start method, more
    workers when this machine has CPUs to spare, and no pinned memory with persistent workers that get reloaded."""
    import multiprocessing

    from fulmen.utilities.warnings import PossibleUserWarning

    if not isinstance(dataloader, DataLoader):
        return
    upper_bound = suggested_max_num_workers(num_processes)
    context = dataloader.multiprocessing_context
    start_method = context.get_start_method() if context is not None else multiprocessing.get_start_method()
    if dataloader.num_workers > 0 and start_method == "spawn" and not dataloader.persistent_workers:
        rank_zero_warn(f"Consider setting `persistent_workers=True` in '{name}' to speed up the dataloader worker "
                       "initialization.")
    elif dataloader.num_workers < 2 and upper_bound > 1:
        rank_zero_warn(f"The '{name}' does not have many workers which may be a bottleneck. Consider increasing the "
                       f"value of the `num_workers` argument` to `num_workers={upper_bound}` in the `DataLoader` to "
                       "improve performance.", category=PossibleUserWarning)
    if dataloader.persistent_workers and dataloader.pin_memory and reloads:
        rank_zero_warn("The combination of `DataLoader(`pin_memory=True`, `persistent_workers=True`) and `Trainer("
                       "reload_dataloaders_every_n_epochs > 0)` can lead to instability due to limitations in PyTorch "
                       "(https://github.com/pytorch/pytorch/issues/91252). We recommend setting `pin_memory=False` in "
                       "this case.", category=PossibleUserWarning)


def suggested_max_num_workers(local_world_size: int) -> int:
    """A ceiling for `DataLoader(num_workers=...)`: the CPUs this process may use, shared among the
    `local_world_size` processes of this machine, minus one for the main process (at least 1)."""
    if local_world_size < 1:
        raise ValueError(f"`local_world_size` should be >= 1, got {local_world_size}.")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // local_world_size - 1)


def is_shared_filesystem(strategy: Strategy, path: str | Path | None = None, timeout: int = 3) -> bool:
    """Whether `path` (default: the working directory) is on a filesystem every process of `strategy` sees.

    A remote URL (`s3://...`) and a single process count as shared. Otherwise rank 0 writes a marker
    file and every rank looks for it for up to `timeout` seconds; the answer is agreed by all ranks.
    Call it on every rank (it holds barriers).

    Raises:
        FileNotFoundError: `path` does not exist on some rank.
    """
    if path is not None and "://" in str(path) and not str(path).startswith("file://"):
        return True
    resolved = Path(Path.cwd() if path is None else path).resolve()
    if getattr(strategy, "world_size", 1) == 1:
        return True
    # A path that resolves differently on the ranks cannot be one shared location.
    if not strategy.reduce_boolean_decision(strategy.broadcast(resolved) == resolved, all=True):
        return False
    if not strategy.reduce_boolean_decision(resolved.exists(), all=True):
        raise FileNotFoundError(f"Cannot tell whether {resolved} is on a shared filesystem: it does not exist on "
                                "every rank. Pass an existing directory.")
    folder = resolved.parent if resolved.is_file() else resolved
    marker = folder / ".fulmen_shared_fs_check"
    marker.unlink(missing_ok=True)
    strategy.barrier()
    if strategy.is_global_zero:
        marker.touch()
        found = True
    else:
        start = time.perf_counter()
        found = marker.exists()
        while not found and time.perf_counter() - start < timeout:
            found = marker.exists()
    strategy.barrier()
    shared = strategy.reduce_boolean_decision(found, all=True)
    with contextlib.suppress(OSError):  # another rank may have removed it already
        marker.unlink()
    return shared
