"""Resolve the dataloaders of each stage and count their batches.

Owns: precedence (arguments > datamodule > module), flattening or combining several loaders, batch limits
(`limit_*_batches`, `overfit_batches`), sampler replacement, worker seeding, and clear errors for
missing or empty data. Does not own: iterating the loaders (`loops/batch_iterator.py`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

from fulmen.core.datamodule import LightningDataModule
from fulmen.loops.batch_iterator import CombinedBatches
from fulmen.trainer.stages import STAGES
from fulmen.trainer.state import RunningStage
from fulmen.utilities.combined_loader import CombinedLoader, combined_length
from fulmen.utilities.data import check_workers, has_iterable_dataset, warn_iterable_with_length
from fulmen.utilities.distributed_samplers import DistributedSamplerWrapper, UnrepeatedDistributedSampler
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import worker_init_function

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.config import TrainerConfig
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.trainer.run import Run


class DataSource:
    """The dataloaders one run uses, with the number of batches each stage draws from them.

    Built per run; it writes what it resolved into the run (`dataloaders`, `train_loader`,
    `num_training_batches`), which is where the Trainer's properties read them.
    """

    def __init__(self, run: Run, hooks: HookDispatch, config: TrainerConfig, strategy: Strategy,
                 use_distributed_sampler: bool) -> None:
        self._run = run
        self._hooks = hooks
        self._config = config
        self._strategy = strategy
        self._use_distributed_sampler = use_distributed_sampler
        # Evaluation stages given a non-sequential CombinedLoader, which they iterate as one (see `request`).
        self.combined: dict[str, CombinedLoader] = {}

    def has_source(self, stage: str) -> bool:
        return stage in self._run.given_loaders or self._hooks.has_dataloader_hook(stage)

    def train_loader(self, reload: bool = False) -> tuple[Any, int | float]:
        """The training dataloader and its batch count: requested once per run, again only when reloading.

        Several loaders (a list/dict, or a `CombinedLoader`) come back as one iterable of combined batches.
        """
        run = self._run
        if run.train_loader is None or reload:
            run.train_loader, run.num_training_batches = self._request_train()
        return run.train_loader, run.num_training_batches

    def _request_train(self) -> tuple[Any, int | float]:
        stage = RunningStage.TRAINING
        raw = self._raw(stage)
        if not isinstance(raw, (CombinedLoader, Mapping, list, tuple)):
            if stage not in self._run.given_loaders:
                check_loaders(raw, f"`{STAGES[stage].dataloader_hook}()` returned")
            loader = self._run.dataloaders[stage] = self._prepare(stage, raw)
            return loader, self.num_batches(stage, loader)
        # Lightning combines several training loaders in `max_size_cycle` mode unless given a CombinedLoader.
        # A given CombinedLoader is copied, so preparing (samplers) never stacks up on the user's object.
        mode = raw._mode if isinstance(raw, CombinedLoader) else "max_size_cycle"
        combined = CombinedLoader(raw.iterables if isinstance(raw, CombinedLoader) else raw, mode)
        if combined._mode == "sequential":
            raise ValueError('`FitLoop` does not support the `CombinedLoader(mode="sequential")` mode: '
                             "`training_step` gets one batch from every loader. Use mode 'max_size_cycle', "
                             "'min_size' or 'max_size'.")
        self._prepare_combined(stage, combined)
        # Each loader's own limit (`limit_train_batches`), then the mode's length over them (Lightning).
        combined.limits = [self.num_batches(stage, loader) for loader in combined.flattened]
        return CombinedBatches(combined), combined_length(combined)

    def _raw(self, stage: str) -> Any:
        given = self._run.given_loaders
        if stage in given:
            return given[stage]
        raw = self._hooks.request_dataloader(stage)
        if raw is None:
            info = STAGES[stage]
            raise MisconfigurationException(
                f"No `{info.dataloader_hook}` found: define `{info.dataloader_hook}()` on your LightningModule or "
                f"LightningDataModule, or pass the dataloader to `Trainer.{info.entry_point}`."
            )
        return raw

    def _prepare_combined(self, stage: str, combined: CombinedLoader) -> None:
        if stage not in self._run.given_loaders:
            check_loaders(combined.flattened, f"`{STAGES[stage].dataloader_hook}()` returned")
        combined.flattened = [self._prepare(stage, loader) for loader in combined.flattened]
        # Lightning's `trainer.*_dataloader(s)` properties give the combined loader's iterables.
        self._run.dataloaders[stage] = combined.iterables

    def request(self, stage: str) -> list[Any]:
        """Return an evaluation/predict stage's dataloaders as a flat list (one entry per `dataloader_idx`).

        A `CombinedLoader` in a mode other than `sequential` is also kept in `combined[stage]`: the stage
        then draws combined batches from it (validation/test only).
        """
        raw = self._raw(stage)
        self.combined.pop(stage, None)
        if isinstance(raw, CombinedLoader):
            combined = CombinedLoader(raw.iterables, raw._mode)
            if combined._mode != "sequential":
                if stage == RunningStage.PREDICTING:
                    raise ValueError('`trainer.predict()` only supports `CombinedLoader(mode="sequential")`: '
                                     "each predict dataloader is run on its own. Pass mode='sequential'.")
                self.combined[stage] = combined
            self._prepare_combined(stage, combined)
            return list(combined.flattened)
        loaders = _flatten(raw)
        if stage not in self._run.given_loaders:
            check_loaders(loaders, f"`{STAGES[stage].dataloader_hook}()` returned")
        prepared = [self._prepare(stage, loader) for loader in loaders]
        self._run.dataloaders[stage] = _reshape(raw, iter(prepared))
        return prepared

    def _prepare(self, stage: str, loader: Any) -> Any:
        # After the sampler injection the strategy may wrap or replace each loader (Lightning's order).
        check_workers(loader, STAGES[stage].dataloader_hook, self._strategy.num_processes,
                      self._config.reload_dataloaders_every_n_epochs > 0)
        return self._strategy.process_dataloader(self._with_samplers(stage, loader))

    def _with_samplers(self, stage: str, loader: Any) -> Any:
        if not isinstance(loader, DataLoader):
            return loader
        config = self._config
        if stage == RunningStage.TRAINING and config.overfit_batches > 0 and not isinstance(loader.sampler, SequentialSampler):
            rank_zero_warn("You requested to overfit but enabled train dataloader shuffling. We are turning off the "
                           "train dataloader shuffling for you (the same batches are seen every epoch).")
            loader = replace_sampler(loader, SequentialSampler(loader.dataset))
        distributed = self._strategy.distributed_sampler_kwargs
        if distributed and self._use_distributed_sampler:
            loader = replace_sampler(loader, _distributed_sampler(stage, loader, distributed))
        if loader.num_workers > 0 and loader.worker_init_fn is None and os.environ.get("PL_SEED_WORKERS") == "1":
            loader.worker_init_fn = functools.partial(worker_init_function, rank=self._strategy.global_rank)
        return loader

    def num_batches(self, stage: str, loader: Any, limit: int | float | None = None) -> int | float:
        """How many batches `stage` draws from `loader` (`inf` for an unsized iterable)."""
        info = STAGES[stage]
        flag = info.limit_flag
        if limit is None:
            limit = getattr(self._config, flag)
        try:
            length: int | float = len(loader)
        except (TypeError, NotImplementedError):
            length = float("inf")
        name = info.dataloader_hook
        if self._strategy.world_size > 1 and self._empty_here_only(loader):
            return 0
        if length != float("inf") and has_iterable_dataset(loader):
            warn_iterable_with_length()
        if length == 0:  # Lightning warns (these words) and runs no batch; `limit_*_batches=0` skips without a word
            rank_zero_warn(f"Total length of `{type(loader).__name__}` across ranks is zero. Please make sure this "
                           f"was your intention (`{name}` yields no batches; `{flag}=0` skips the stage quietly).")
            return 0
        if isinstance(limit, int):
            return min(length, limit)
        if length == float("inf"):
            if limit != 1.0:
                prefix = flag[len("limit_"):-len("_batches")]
                raise MisconfigurationException(
                    f"When using an `IterableDataset`, `Trainer({flag})` must be `1.0` or an int. An int specifies "
                    f"`num_{prefix}_batches` to use: `{flag}={limit}` is a fraction, but the `{name}` has no length."
                )
            return length
        count = int(length * limit)
        if count == 0 and limit > 0:
            raise MisconfigurationException(
                f"`{flag}={limit}` of the {length} batches of `{name}` is less than one batch; "
                f"use at least `{flag}={1.0 / length:.4g}` or an int."
            )
        return count


    def _empty_here_only(self, loader: Any) -> bool:
        """Whether this rank's `loader` is empty while other ranks' are not, and that is allowed (a collective: every
        rank calls it for every loader)."""
        from fulmen.utilities.data import has_len_all_ranks, sized_len

        run = self._run
        allowed = getattr(run.module, "allow_zero_length_dataloader_with_multiple_devices", False) or getattr(
            run.datamodule, "allow_zero_length_dataloader_with_multiple_devices", False)
        return has_len_all_ranks(loader, self._strategy, allowed) and sized_len(loader) == 0 and allowed


def _distributed_sampler(stage: str, loader: DataLoader, kwargs: dict[str, int]) -> Any:
    """Each rank's share: training always shuffles (seeded so ranks agree); evaluation pads; predict does not."""
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    if stage == RunningStage.PREDICTING:
        return UnrepeatedDistributedSampler(loader.dataset, shuffle=False, seed=seed, **kwargs)
    shuffle = stage == RunningStage.TRAINING
    if isinstance(loader.sampler, (SequentialSampler, RandomSampler)):
        return DistributedSampler(loader.dataset, shuffle=shuffle, seed=seed, **kwargs)
    return DistributedSamplerWrapper(loader.sampler, shuffle=shuffle, seed=seed, **kwargs)


def _flatten(raw: Any) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return [loader for value in raw.values() for loader in _flatten(value)]
    if isinstance(raw, (list, tuple)):
        return [loader for value in raw for loader in _flatten(value)]
    return [raw]


def check_loaders(raw: Any, source: str) -> None:
    """Raise when `raw` (a loader, or a list/dict of them) holds a Dataset or something that is not iterable."""
    for loader in _flatten(raw):
        if isinstance(loader, CombinedLoader):
            for inner in loader.flattened:
                _check_loader(inner, source)
        else:
            _check_loader(loader, source)


def _check_loader(loader: Any, source: str) -> None:
    if isinstance(loader, (Dataset, IterableDataset)) and not isinstance(loader, DataLoader):
        raise TypeError(f"{source} a {type(loader).__name__}, which is a Dataset, not a DataLoader: iterating it "
                        "yields single unbatched samples. Wrap it: `DataLoader(dataset, batch_size=...)`.")
    if isinstance(loader, LightningDataModule):
        raise TypeError(f"{source} a LightningDataModule ({type(loader).__name__}); pass it as `datamodule=` "
                        "instead.")
    if not hasattr(loader, "__iter__") or isinstance(loader, (str, bytes)):
        raise TypeError(f"{source} {loader!r} ({type(loader).__name__}), which is not a dataloader. Pass a "
                        "`torch.utils.data.DataLoader` (or any iterable of batches), or a list or dict of them.")


def _reshape(raw: Any, prepared: Any) -> Any:
    """`raw`'s list/tuple/dict structure, with each loader replaced by the next prepared one."""
    if isinstance(raw, Mapping):
        return {key: _reshape(value, prepared) for key, value in raw.items()}
    if isinstance(raw, (list, tuple)):
        items = [_reshape(value, prepared) for value in raw]
        return items if isinstance(raw, list) else tuple(items)
    return next(prepared)


def replace_sampler(loader: DataLoader, sampler: Any) -> DataLoader:
    """Rebuild a plain `DataLoader` with another sampler, keeping its other settings."""
    if type(loader) is not DataLoader or loader.batch_sampler is None:
        rank_zero_warn(f"Cannot replace the sampler of a {type(loader).__name__}; keeping it as it is.")
        return loader
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
        persistent_workers=loader.persistent_workers, multiprocessing_context=loader.multiprocessing_context,
    )
