"""`CombinedLoader`: draw from several iterables (dataloaders) at once, or one after another.

Owns: flattening a nested list/tuple/dict of iterables into a flat list and rebuilding batches in that
shape, and the four combination modes. Used by the Trainer for several training dataloaders and for a
`CombinedLoader` given to any entry point (`trainer/data_source.py`).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from torch.utils.data.dataloader import _BaseDataLoaderIter, _MultiProcessingDataLoaderIter

_Mode = Literal["min_size", "max_size_cycle", "max_size", "sequential"]
_MODES = ("min_size", "max_size_cycle", "max_size", "sequential")

# -- structure: flatten a collection of iterables, and rebuild one batch per leaf in the same shape ------


def _is_leaf(tree: Any) -> bool:
    if not isinstance(tree, (list, tuple, Mapping)):
        return True
    children = tree.values() if isinstance(tree, Mapping) else tree
    # A container of plain numbers/strings (e.g. `[1, 2, 3]`) is itself one iterable (Lightning).
    return all(isinstance(child, (int, float, str)) for child in children)


def _flatten(tree: Any) -> tuple[list[Any], Any]:
    """The leaves of `tree` in order, and a spec `_unflatten` rebuilds the shape from (None for a leaf)."""
    if _is_leaf(tree):
        return [tree], None
    if isinstance(tree, Mapping):
        keys = list(tree.keys())
        children = [tree[key] for key in keys]
    else:
        keys, children = None, list(tree)
    leaves: list[Any] = []
    child_specs = []
    for child in children:
        child_leaves, child_spec = _flatten(child)
        leaves.extend(child_leaves)
        child_specs.append((len(child_leaves), child_spec))
    return leaves, (tree, keys, child_specs)


def _unflatten(values: list[Any], spec: Any) -> Any:
    return _build(iter(values), spec)


def _build(values: Iterator[Any], spec: Any) -> Any:
    if spec is None:
        return next(values)
    template, keys, child_specs = spec
    children = [_build(values, child_spec) for _, child_spec in child_specs]
    if keys is not None:
        if isinstance(template, defaultdict):
            return defaultdict(template.default_factory, zip(keys, children))
        return (OrderedDict if isinstance(template, OrderedDict) else dict)(zip(keys, children))
    if isinstance(template, tuple):
        return type(template)(*children) if hasattr(template, "_fields") else tuple(children)
    return children


def _lengths(iterables: list[Any]) -> list[int | float]:
    lengths: list[int | float] = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))
        except (TypeError, NotImplementedError):
            lengths.append(float("inf"))
    return lengths


# -- the modes: each yields `(values, batch_idx, dataloader_idx)` over the flat list of iterables --------


class _ModeIterator(Iterator[tuple[Any, int, int]]):
    def __init__(self, iterables: list[Any], limits: list[int | float] | None) -> None:
        self.iterables, self.limits = iterables, limits
        self.iterators: list[Iterator[Any]] = []
        self.batch_idx = 0

    def __iter__(self) -> _ModeIterator:
        self.iterators = [iter(iterable) for iterable in self.iterables]
        self.batch_idx = 0
        return self

    def _emit(self, values: Any, dataloader_idx: int = 0) -> tuple[Any, int, int]:
        index = self.batch_idx
        self.batch_idx += 1
        return values, index, dataloader_idx

    def _limited(self) -> list[int | float]:
        lengths = _lengths(self.iterables)
        if self.limits is None:
            return lengths
        return [min(length, limit) for length, limit in zip(lengths, self.limits)]

    def length(self) -> int | float:
        return max(self._limited())

    def reset(self) -> None:
        self.iterators, self.batch_idx = [], 0

    def __getstate__(self) -> dict[str, Any]:
        # A running DataLoader iterator cannot be pickled (e.g. a CombinedLoader sent to "ddp_spawn" ranks).
        state = self.__dict__.copy()
        state["iterators"] = [None if isinstance(it, _BaseDataLoaderIter) else it for it in self.iterators]
        return state


class _MaxSizeCycle(_ModeIterator):
    """Until the longest iterable is done; shorter ones start over when exhausted."""

    def __iter__(self) -> _MaxSizeCycle:
        super().__iter__()
        self.exhausted = [False] * len(self.iterables)
        return self

    def __next__(self) -> tuple[Any, int, int]:
        values = []
        for i, iterator in enumerate(self.iterators):
            try:
                values.append(next(iterator))
            except StopIteration:
                self.exhausted[i] = True
                if all(self.exhausted):
                    raise
                self.iterators[i] = iter(self.iterables[i])
                values.append(next(self.iterators[i]))
        return self._emit(values)


class _MinSize(_ModeIterator):
    """Until the shortest iterable is done. Lightning quirk: limits shorten `len`, not the iteration."""

    def __next__(self) -> tuple[Any, int, int]:
        return self._emit([next(iterator) for iterator in self.iterators])

    def length(self) -> int | float:
        lengths = _lengths(self.iterables)
        return min(lengths + list(self.limits)) if self.limits is not None else min(lengths)


class _MaxSize(_ModeIterator):
    """Until the longest iterable is done; exhausted ones give None."""

    def __next__(self) -> tuple[Any, int, int]:
        values: list[Any] = []
        for iterator in self.iterators:
            values.append(next(iterator, _DONE))
        if all(value is _DONE for value in values):
            raise StopIteration
        return self._emit([None if value is _DONE else value for value in values])


class _Sequential(_ModeIterator):
    """Each iterable to its end (or its limit) in turn; `batch_idx` restarts per iterable."""

    def __iter__(self) -> _Sequential:
        self.batch_idx, self.current = 0, 0
        self._open_current()
        return self

    def _open_current(self) -> None:
        # Only the current iterable is iterated, so a second set of dataloader workers never starts early.
        self.iterators = [iter(self.iterables[self.current])] if self.current < len(self.iterables) else []

    def _advance(self) -> None:
        self.current += 1
        self.batch_idx = 0
        self._open_current()

    def __next__(self) -> tuple[Any, int, int]:
        while self.current < len(self.iterables):
            if self.limits is not None and self.batch_idx >= self.limits[self.current]:
                self._advance()
                continue
            try:
                value = next(self.iterators[0])
            except StopIteration:
                self._advance()
                continue
            return self._emit(value, self.current)
        raise StopIteration

    def length(self) -> int | float:
        return sum(self._limited())

    def reset(self) -> None:
        super().reset()
        self.current = 0


_DONE = object()
_ITERATORS: dict[str, type[_ModeIterator]] = {"min_size": _MinSize, "max_size_cycle": _MaxSizeCycle,
                                              "max_size": _MaxSize, "sequential": _Sequential}


class CombinedLoader(Iterable):
    """Iterate several iterables (typically dataloaders) together, under one of four modes.

    `iterables` is one iterable or a (nested) list, tuple or dict of them. Iterating yields
    `(batch, batch_idx, dataloader_idx)`:

    * `min_size`: one batch from each, shaped like `iterables`, until the shortest is exhausted.
    * `max_size_cycle`: likewise until the longest is exhausted; shorter ones start over.
    * `max_size`: likewise until the longest is exhausted; exhausted ones contribute `None`.
    * `sequential`: each iterable to its end in turn; `batch` is that iterable's own batch,
      `batch_idx` restarts at 0 and `dataloader_idx` is its position in `flattened`.

    In the first three modes `dataloader_idx` is always 0. Call `iter()` before `len()`.

    Example::

        loaders = {"a": DataLoader(range(6), batch_size=4), "b": DataLoader(range(15), batch_size=5)}
        for batch, batch_idx, _ in CombinedLoader(loaders, "max_size_cycle"):
            ...  # batch == {"a": tensor, "b": tensor}
    """

    def __init__(self, iterables: Any, mode: _Mode = "min_size") -> None:
        if mode not in _MODES:
            raise ValueError(f"Unsupported mode {mode!r}, please select one of: {list(_MODES)}.")
        self._iterables = iterables
        self._flattened, self._spec = _flatten(iterables)
        self._mode = mode
        self._iterator: _ModeIterator | None = None
        self._limits: list[int | float] | None = None

    @property
    def iterables(self) -> Any:
        """The iterables as given: one, or the list/tuple/dict of them."""
        return self._iterables

    @property
    def flattened(self) -> list[Any]:
        """The iterables as a flat list (depth first); `dataloader_idx` indexes it in `sequential` mode."""
        return self._flattened

    @flattened.setter
    def flattened(self, flattened: list[Any]) -> None:
        """Replace the iterables (e.g. rebuilt dataloaders), keeping the shape of `iterables`."""
        if len(flattened) != len(self._flattened):
            raise ValueError(f"Mismatch in flattened length ({len(flattened)}) and existing length "
                             f"({len(self._flattened)}): pass one iterable per entry of `flattened`.")
        self._iterables = _unflatten(flattened, self._spec)
        self._flattened = list(flattened)

    @property
    def sampler(self) -> Any:
        """Each iterable's `sampler` (None where it has none), shaped like `iterables`."""
        return _unflatten([getattr(iterable, "sampler", None) for iterable in self._flattened], self._spec)

    @property
    def batch_sampler(self) -> Any:
        """Each iterable's `batch_sampler` (None where it has none), shaped like `iterables`."""
        return _unflatten([getattr(iterable, "batch_sampler", None) for iterable in self._flattened], self._spec)

    @property
    def limits(self) -> list[int | float] | None:
        """The most batches to take from each iterable (None: no limit)."""
        return self._limits

    @limits.setter
    def limits(self, limits: int | float | list[int | float] | None) -> None:
        if isinstance(limits, (int, float)):
            limits = [limits] * len(self._flattened)
        elif isinstance(limits, list) and len(limits) != len(self._flattened):
            raise ValueError(f"Mismatch in number of limits ({len(limits)}) and number of iterables "
                             f"({len(self._flattened)}): give one limit per iterable, or a single number.")
        self._limits = limits

    def __iter__(self) -> CombinedLoader:
        self._iterator = iter(_ITERATORS[self._mode](self._flattened, self._limits))
        return self

    def __next__(self) -> tuple[Any, int, int]:
        if self._iterator is None:
            raise RuntimeError("Call `iter(combined_loader)` before `next(combined_loader)`.")
        values, batch_idx, dataloader_idx = next(self._iterator)
        if self._mode == "sequential":
            return values, batch_idx, dataloader_idx
        return _unflatten(values, self._spec), batch_idx, dataloader_idx

    def __len__(self) -> int:
        """The number of batches one pass yields, under the mode and `limits`."""
        if self._iterator is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        length = self._iterator.length()
        if length == float("inf"):
            raise TypeError("This CombinedLoader has no length: one of its iterables has no `__len__` "
                            "(e.g. an IterableDataset's DataLoader). Iterate it without asking for `len()`.")
        return int(length)

    def reset(self) -> None:
        """Drop the running iteration and shut down the dataloader workers it started."""
        if self._iterator is not None:
            self._iterator.reset()
            self._iterator = None
        for iterable in self._flattened:
            iterator = getattr(iterable, "_iterator", None)
            if isinstance(iterator, _MultiProcessingDataLoaderIter):
                iterator._shutdown_workers()


def combined_length(combined: CombinedLoader) -> int | float:
    """Batches in one pass of `combined` under its mode and limits, `inf` when unsized (no `iter` needed)."""
    return _ITERATORS[combined._mode](combined.flattened, combined.limits).length()
