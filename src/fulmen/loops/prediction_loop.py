"""PredictionLoop: run `predict_step` over the predict dataloaders and collect the outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fulmen.loops.batch_iterator import iterate_batches
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

    def run(self) -> Any:
        """Request the predict dataloaders, run every batch, return the predictions (None if not kept)."""
        data, hooks = self.data, self.hooks
        loaders = data.request("predict")
        num_batches = self.run_state.num_predict_batches = [data.num_batches("predict", loader) for loader in loaders]
        precision = self.strategy.precision_plugin
        several = len(loaders) > 1
        hooks.check_dataloader_idx("predict", several)
        predictions: list[list[Any]] = [[] for _ in loaders]
        no_grad = torch.inference_mode() if self.config.inference_mode else torch.no_grad()
        with no_grad:
            hooks.model_eval("predict")
            hooks.on_predict_start()
            hooks.on_predict_epoch_start()
            for dataloader_idx, loader in enumerate(loaders):
                for batch_idx, batch, _ in iterate_batches(loader, num_batches[dataloader_idx]):
                    batch = hooks.transfer_batch(precision.convert_input(batch), dataloader_idx)
                    args = (batch, batch_idx, dataloader_idx) if several else (batch, batch_idx)
                    hooks.on_predict_batch_start(*args)  # `dataloader_idx` only with several loaders, as in Lightning
                    prediction = hooks.predict_step(*args)
                    if prediction is None:
                        rank_zero_warn("`predict_step` returned None; if that was intended, ignore this warning.")
                    hooks.on_predict_batch_end(prediction, *args)
                    if self.return_predictions:
                        predictions[dataloader_idx].append(move_data_to_device(prediction, "cpu"))
            hooks.on_predict_epoch_end()
            hooks.on_predict_end()
        hooks.model_train("predict")
        if not self.return_predictions:
            return None
        return predictions[0] if len(predictions) == 1 else predictions
