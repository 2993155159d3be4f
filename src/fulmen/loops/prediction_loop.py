"""PredictionLoop: run `predict_step` over the predict dataloaders and collect the outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fulmen.loops.batch_iterator import iterate_batches
from fulmen.utilities.apply_func import move_data_to_device
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.run import Run
    from fulmen.trainer.trainer import Trainer


class PredictionLoop:
    """Collects predictions per dataloader (moved to CPU), unless `return_predictions=False`."""

    def __init__(self, trainer: Trainer, run: Run, return_predictions: bool) -> None:
        self.trainer = trainer
        self.run_state = run
        self.return_predictions = return_predictions

    def run(self, loaders: list[Any], num_batches: list[int | float]) -> Any:
        trainer = self.trainer
        hooks = trainer._hooks
        precision = trainer.strategy.precision_plugin
        several = len(loaders) > 1
        hooks.check_dataloader_idx("predict", several)
        predictions: list[list[Any]] = [[] for _ in loaders]
        no_grad = torch.inference_mode() if trainer._config.inference_mode else torch.no_grad()
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
