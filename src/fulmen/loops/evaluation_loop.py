"""EvaluationLoop: validation (inside fit, and `validate`), the sanity check, and `test`.

Owns: eval mode and no-grad/inference mode around the run, iterating several dataloaders in
sequence with `dataloader_idx` (or together, from a non-sequential `CombinedLoader`), and returning
one metrics dict per dataloader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fulmen.loops.batch_iterator import CombinedBatches, iterate_batches, profiled_batches
from fulmen.trainer.state import RunningStage, TrainerFn
from fulmen.utilities.combined_loader import CombinedLoader, combined_length

if TYPE_CHECKING:
    from fulmen.results.metrics_router import MetricsRouter
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.config import TrainerConfig
    from fulmen.trainer.data_source import DataSource
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.trainer.run import Run
    from fulmen.trainer.state import TrainerState


class EvaluationLoop:
    """Runs `validation_step` or `test_step` over every batch of the stage's dataloaders.

    Args:
        run: where the batch counts are recorded.
        state: the stage, and the step loggers see.
        config: `inference_mode`.
        hooks, metrics, strategy, data: the run's collaborators (no Trainer needed).
        stage: "validate" or "test".
    """

    def __init__(self, run: Run, state: TrainerState, config: TrainerConfig, hooks: HookDispatch,
                 metrics: MetricsRouter, strategy: Strategy, data: DataSource, stage: str) -> None:
        self.run_state, self.state, self.config = run, state, config
        self.hooks, self.metrics, self.strategy, self.data = hooks, metrics, strategy, data
        self.stage = stage
        self.loaders: list[Any] = []
        self.num_batches: list[int | float] = []
        self.combined: CombinedLoader | None = None
        self.enabled = False
        self.no_batches = False  # its data has no batch: a due validation only calls on_validation_model_zero_grad
        self.last_reload_epoch: int | None = None  # in fit, the epoch its data was last requested (reloading)

    @property
    def max_batches(self) -> list[int | float]:
        """Batches to run per dataloader (Lightning's name for `num_batches`)."""
        return self.num_batches

    @property
    def dataloaders(self) -> Any:
        """The dataloaders of this stage, shaped as given (a loader, list or dict)."""
        return self.run_state.dataloaders.get(self.stage)

    def setup_data(self) -> None:
        """Request the dataloaders (once per run, or again when reloading) and count their batches."""
        limit = self.config.limit_test_batches if self.stage == RunningStage.TESTING else self.config.limit_val_batches
        if limit == 0:  # Lightning requests no data then
            self.loaders, self.num_batches, self.combined, self.logged_steps = [], [], None, []
            return
        self.loaders = self.data.request(self.stage)
        self.num_batches = [self.data.num_batches(self.stage, loader) for loader in self.loaders]
        # A CombinedLoader in a non-sequential mode: steps get its combined batches, as from one dataloader.
        self.combined = self.data.combined.get(self.stage)
        # Loggers see evaluation step values at a per-dataloader batch count that runs on across the
        # validations of one fit (it restarts only when the dataloaders are requested again).
        self.logged_steps = [0] * len(self.loaders)

    def run_in_fit(self) -> list[dict[str, float]]:
        """Validate during fit; the stage switches back to training afterwards."""
        self.state.stage = RunningStage.VALIDATING
        try:
            return self.run(self.num_batches)
        finally:
            self.state.stage = RunningStage.TRAINING

    def _batches(self, num_batches: list[int | float]) -> tuple[list[Any], list[int | float]]:
        """The iterables to run and their batch counts: one per dataloader, or one of combined batches."""
        combined = self.combined
        if combined is None:
            return self.loaders, num_batches
        # Each loader keeps its own limit; the combined length under the mode is what runs (Lightning).
        combined.limits = list(num_batches)
        return [CombinedBatches(combined)], [combined_length(combined)]

    def run(self, num_batches: list[int | float], sanity_checking: bool = False) -> list[dict[str, float]]:
        if not sum(num_batches):
            return []  # no batch in any dataloader: Lightning skips the loop, hooks included
        hooks, metrics = self.hooks, self.metrics
        precision = self.strategy.precision_plugin
        testing = self.stage == "test"
        requested = self.loaders
        loaders, counts = self._batches(num_batches)
        several = len(loaders) > 1
        if testing:
            on_start, on_epoch_start = hooks.on_test_start, hooks.on_test_epoch_start
            on_batch_start, step, on_batch_end = hooks.on_test_batch_start, hooks.test_step, hooks.on_test_batch_end
            on_epoch_end, on_end = hooks.on_test_epoch_end, hooks.on_test_end
        else:
            on_start, on_epoch_start = hooks.on_validation_start, hooks.on_validation_epoch_start
            on_batch_start, step = hooks.on_validation_batch_start, hooks.validation_step
            on_batch_end = hooks.on_validation_batch_end
            on_epoch_end, on_end = hooks.on_validation_epoch_end, hooks.on_validation_end
        hooks.check_dataloader_idx(self.stage, several)
        # Full counts, also while sanity checking (Lightning).
        if testing:
            self.run_state.num_test_batches = list(self.num_batches)
        else:
            self.run_state.num_val_batches = list(self.num_batches)

        # Lightning's quirk: validation inside `fit` runs under `no_grad` even with `inference_mode=True`, so tensors a
        # callback makes there (pruning masks, averaged weights) can still take part in training afterwards.
        inference = self.config.inference_mode and self.state.fn != TrainerFn.FITTING
        no_grad = torch.inference_mode() if inference else torch.no_grad()
        profiler = hooks.active_profiler
        next_action = f"[_EvaluationLoop].{'test' if testing else 'val'}_next"  # Lightning's action name
        with no_grad:
            hooks.model_eval(self.stage)
            metrics.start_evaluation()
            on_start()
            if self.loaders is not requested:  # `on_*_start` requested the data again (BatchSizeFinder): run that
                loaders, counts = self._batches(self.num_batches)
                setattr(self.run_state, "num_test_batches" if testing else "num_val_batches", list(self.num_batches))
            on_epoch_start()
            for dataloader_idx, loader in enumerate(loaders):
                metrics.dataloader_idx = dataloader_idx if several else None
                for batch_idx, batch, _ in iterate_batches(profiled_batches(loader, profiler, next_action),
                                                             counts[dataloader_idx]):
                    batch = hooks.transfer_batch(precision.convert_input(batch), dataloader_idx)
                    metrics.eval_results.on_batch(batch)
                    args = (batch, batch_idx, dataloader_idx) if several else (batch, batch_idx)
                    on_batch_start(*args)
                    output = step(*args)
                    on_batch_end(output, *args)
                    if not sanity_checking:
                        metrics.eval_step_done(self.logged_steps[dataloader_idx])
                        self.logged_steps[dataloader_idx] += 1
            metrics.dataloader_idx = None
            metrics.eval_epoch_end_reached()
            on_epoch_end()
            results = metrics.evaluation_done(len(loaders), self.state.batches_that_stepped, sanity_checking)
            on_end()
            hooks.model_train(self.stage)
        return results
