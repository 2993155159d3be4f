"""Iterate one dataloader (or the combined batches of several) for one epoch, up to a batch limit,
knowing which batch is the last.

Owns: drawing exactly the batches an epoch uses. A sized loader is never asked for one batch more than
the epoch needs (an extra draw would shift a seeded sampler's order); an unsized one is read one batch
ahead so the last batch can be recognized.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from fulmen.utilities.combined_loader import CombinedLoader


def iterate_batches(batches: Iterable[Any], max_batches: int | float,
                    start: int = 0) -> Iterator[tuple[int, Any, bool]]:
    """Yield `(batch_idx, batch, is_last_batch)` for at most `max_batches` batches of an epoch.

    `batches` is a dataloader, or an iterator over one that already drew the first `start` batches
    (resuming mid-epoch, `loops/resume.py`); the indices then count on from `start`. The loader is
    iterated only when the first batch is requested.
    """
    if max_batches == 0:
        return
    iterator = iter(batches)
    if max_batches != float("inf"):
        last_idx = int(max_batches) - 1
        for batch_idx in range(start, last_idx + 1):
            try:
                batch = next(iterator)
            except StopIteration:
                return
            yield batch_idx, batch, batch_idx == last_idx
        return
    try:
        batch = next(iterator)
    except StopIteration:
        return
    batch_idx = start
    for following in iterator:
        yield batch_idx, batch, False
        batch, batch_idx = following, batch_idx + 1
    yield batch_idx, batch, True


def profiled_batches(batches: Iterable[Any], profiler: Any, action: str) -> Iterable[Any]:
    """`batches` with each draw of a batch timed as `action` by `profiler` (as is when `profiler` is None).

    The loops call this once per epoch, so without a profiler the batches are drawn exactly as before.
    """
    if profiler is None:
        return batches
    return _ProfiledBatches(batches, profiler, action)


class _ProfiledBatches:
    def __init__(self, batches: Iterable[Any], profiler: Any, action: str) -> None:
        self.batches, self.profiler, self.action = batches, profiler, action

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.batches)
        start, stop, action = self.profiler.start, self.profiler.stop, self.action
        while True:
            start(action)
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                stop(action)
            yield batch


class CombinedBatches:
    """The batches of a `CombinedLoader` without its indices: what `training_step` (or a combined evaluation)
    receives. Iterable once per epoch, like a dataloader; `loaders` are the combined dataloaders."""

    def __init__(self, combined: CombinedLoader) -> None:
        self.combined = combined

    @property
    def loaders(self) -> list[Any]:
        return self.combined.flattened

    def __iter__(self) -> Iterator[Any]:
        return (batch for batch, _, _ in iter(self.combined))


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Tell the loader's sampler(s) the epoch, so distributed and seeded samplers reshuffle."""
    if isinstance(loader, CombinedBatches):
        for inner in loader.loaders:
            set_sampler_epoch(inner, epoch)
        return
    for candidate in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        setter = getattr(candidate, "set_epoch", None)
        if callable(setter):
            setter(epoch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    if inner is not None and inner is not getattr(loader, "sampler", None) and callable(getattr(inner, "set_epoch", None)):
        inner.set_epoch(epoch)


def data_generators(loader: Any) -> list[Any]:
    """The torch Generators that decide a loader's order (loader, sampler, batch sampler's sampler)."""
    if isinstance(loader, CombinedBatches):
        return [generator for inner in loader.loaders for generator in data_generators(inner)]
    found: list[Any] = []
    candidates = (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None),
                  getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None))
    for generator in candidates:
        if isinstance(generator, torch.Generator) and all(generator is not other for other in found):
            found.append(generator)
    return found
