"""PredictionLoop: run `predict_step` over the predict dataloaders and collect the outputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from fulmen.loops.batch_iterator import iterate_batches, profiled_batches
from fulmen.utilities.apply_func import move_data_to_device
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.config import TrainerConfig
    from fulmen.trainer.data_source import DataSource
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.trainer.run import Run


class PredictionLoop:
    """Collects predictions per dataloader (moved to CPU), unless `return_predictions=False`.

    With a `BasePredictionWriter` among the callbacks, it also records which dataset indices each batch holds
    (`current_batch_indices`, and per dataloader `epoch_batch_indices`) and keeps the predictions for an
    epoch-interval writer even when they are not returned.

    Args:
        run: where the batch counts are recorded.
        config: `inference_mode`.
        hooks, strategy, data: the run's collaborators (no Trainer needed).
    """

    def __init__(self, run: Run, config: TrainerConfig, hooks: HookDispatch, strategy: Strategy, data: DataSource,
                 return_predictions: bool) -> None:
        self.run_state, self.config = run, config
        self.hooks, self.strategy, self.data = hooks, strategy, data
        self.return_predictions = return_predictions
        self.current_batch_indices: list[int] = []  # dataset indices of the running batch (prediction writers)
        self.epoch_batch_indices: list[list[list[int]]] = []  # dataloaders x batches x indices
        self._predictions: list[list[Any]] = []  # dataloaders x batches
        self._requested = False  # whether `request_again` was called since the data was requested

    @property
    def predictions(self) -> list[Any]:
        """The predictions kept so far: a list per batch, or per dataloader when there are several."""
        return self._predictions[0] if len(self._predictions) == 1 else self._predictions

    def request_again(self) -> None:
        """Request the predict dataloaders again before the batches run (from `on_predict_start`)."""
        self._requested = True

    def _setup_data(self) -> tuple[Any, list[int | float], bool, Any]:
        data = self.data
        loaders = data.request("predict")
        num_batches = self.run_state.num_predict_batches = [data.num_batches("predict", loader) for loader in loaders]
        several = len(loaders) > 1
        self.hooks.check_dataloader_idx("predict", several)
        from fulmen.callbacks.prediction_writer import BasePredictionWriter

        recorders: list[_IndexRecorder | None] | None = None
        if any(isinstance(cb, BasePredictionWriter) for cb in self.run_state.callbacks):
            loaders, recorders = zip(*(_record_indices(loader) for loader in loaders))
        self._predictions = [[] for _ in loaders]
        self.epoch_batch_indices = [[] for _ in loaders]
        return loaders, num_batches, several, recorders

    def run(self) -> Any:
        """Request the predict dataloaders, run every batch, return the predictions (None if not kept)."""
        hooks = self.hooks
        self._requested = False
        if self.config.limit_predict_batches == 0:
            return None  # Lightning requests no data and calls no predict hook then
        loaders, num_batches, several, recorders = self._setup_data()
        if not sum(num_batches):
            return None  # nothing to predict: no hook runs (Lightning)
        precision = self.strategy.precision_plugin
        from fulmen.callbacks.prediction_writer import BasePredictionWriter

        writers = [cb for cb in self.run_state.callbacks if isinstance(cb, BasePredictionWriter)]
        on_batch, on_epoch = any(w.interval.on_batch for w in writers), any(w.interval.on_epoch for w in writers)
        keep = self.return_predictions or on_epoch
        no_grad = torch.inference_mode() if self.config.inference_mode else torch.no_grad()
        with no_grad:
            hooks.model_eval("predict")
            hooks.on_predict_start()
            if self._requested:  # `on_predict_start` asked for the data again (BatchSizeFinder): run that
                loaders, num_batches, several, recorders = self._setup_data()
            predictions = self._predictions
            hooks.on_predict_epoch_start()
            for dataloader_idx, loader in enumerate(loaders):
                profiled = profiled_batches(loader, hooks.active_profiler, "[_PredictionLoop].predict_next")
                for batch_idx, batch, _ in iterate_batches(profiled, num_batches[dataloader_idx]):
                    if recorders is not None and recorders[dataloader_idx] is not None:
                        indices = recorders[dataloader_idx].seen[batch_idx]
                        if on_epoch:
                            self.epoch_batch_indices[dataloader_idx].append(indices)
                        if on_batch:
                            self.current_batch_indices = indices
                    batch = hooks.transfer_batch(precision.convert_input(batch), dataloader_idx)
                    args = (batch, batch_idx, dataloader_idx) if several else (batch, batch_idx)
                    hooks.on_predict_batch_start(*args)  # `dataloader_idx` only with several loaders, as in Lightning
                    prediction = hooks.predict_step(*args)
                    if prediction is None:
                        rank_zero_warn("predict returned None if it was on purpose, ignore this warning...")
                    hooks.on_predict_batch_end(prediction, *args)
                    if keep:
                        predictions[dataloader_idx].append(move_data_to_device(prediction, "cpu"))
            hooks.on_predict_epoch_end()
            results = self.predictions if self.return_predictions else None
            if not self.return_predictions:
                self._predictions = []
            self.epoch_batch_indices = []
            hooks.on_predict_end()
        hooks.model_train("predict")
        return results


class _IndexRecorder:
    """A batch sampler that remembers the indices of every batch it hands out (workers may run ahead)."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        self.seen: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        self.seen = []
        for indices in self.batch_sampler:
            self.seen.append(list(indices))
            yield indices

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _record_indices(loader: Any) -> tuple[Any, _IndexRecorder | None]:
    """`loader` rebuilt to record its batches' dataset indices, or as is (with a warning) when that is not possible."""
    if (type(loader) is not DataLoader or loader.batch_sampler is None
            or isinstance(loader.dataset, torch.utils.data.IterableDataset)):
        rank_zero_warn(f"Couldn't infer the batch indices fetched from your dataloader: `{type(loader).__name__}`. "
                       "Prediction writers get empty `batch_indices` for it; a `torch.utils.data.DataLoader` over a "
                       "map-style dataset, with a batch size, records them.")  # Lightning's words first
        return loader, None
    recorder = _IndexRecorder(loader.batch_sampler)
    rebuilt = DataLoader(
        loader.dataset, batch_sampler=recorder, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        generator=loader.generator, prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
        persistent_workers=loader.persistent_workers, multiprocessing_context=loader.multiprocessing_context,
    )
    return rebuilt, recorder
