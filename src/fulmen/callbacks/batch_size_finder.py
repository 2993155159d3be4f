"""BatchSizeFinder: scales the batch size when a Trainer call starts (Lightning's `callbacks.batch_size_finder`)."""

from __future__ import annotations

from typing import Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException, _TunerExitException
from fulmen.utilities.parsing import lightning_hasattr
from fulmen.utilities.rank_zero import rank_zero_warn


class BatchSizeFinder(Callback):
    """Finds the largest batch size that does not run out of memory when fit/validate/test/predict starts (see
    `Tuner.scale_batch_size`); the result is `optimal_batch_size`, also set on `batch_arg_name`.

    Args:
        mode: "power" (double until a failure) or "binsearch" (then bisect between success and failure).
        steps_per_trial: steps run at each batch size.
        init_val: the first batch size tried.
        max_trials: the most batch sizes tried.
        batch_arg_name: the attribute the dataloaders read the batch size from, on the model, its hparams, the
            datamodule or its hparams.
        margin: fraction taken off the size found, in "binsearch" mode (0 <= margin < 1).
        max_val: the largest batch size tried.
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> None:
        from fulmen.tuner.batch_size_scaling import _check_margin

        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"`mode` should be either of {self.SUPPORTED_MODES}; received {mode!r}.")
        _check_margin(margin)
        self.optimal_batch_size: int | None = init_val
        self._mode, self._steps_per_trial, self._init_val = mode, steps_per_trial, init_val
        self._max_trials, self._batch_arg_name = max_trials, batch_arg_name
        self._margin, self._max_val = margin, max_val
        self._early_exit = False

    def setup(self, trainer: Any, pl_module: Any, stage: str | None = None) -> None:
        if trainer.world_size > 1 or trainer.strategy.launcher is not None:
            raise MisconfigurationException("The Batch size finder is not supported with distributed strategies.")
        from fulmen.trainer.trial import given_loaders

        if stage == "fit" and "train" in given_loaders(trainer):
            raise MisconfigurationException(
                "The Batch size finder cannot be used with dataloaders passed directly to `.fit()`. Please disable the "
                "feature or incorporate the dataloader into your LightningModule or LightningDataModule.")
        if not lightning_hasattr(pl_module, self._batch_arg_name):
            raise MisconfigurationException(f"Field {self._batch_arg_name} not found in `model`, `datamodule`, nor "
                                            "their `hparams` attributes.")
        if (hasattr(pl_module, self._batch_arg_name) and hasattr(pl_module, "hparams")
                and self._batch_arg_name in pl_module.hparams):
            rank_zero_warn(f"Field `model.{self._batch_arg_name}` and `model.hparams.{self._batch_arg_name}` are "
                           f"mutually exclusive! `model.{self._batch_arg_name}` will be used as the initial batch "
                           "size for scaling. If this is not the intended behavior, please remove either one.")

    def scale_batch_size(self, trainer: Any, pl_module: Any) -> None:
        """Run the search now; the run continues from the state it had before, at the size found."""
        from fulmen.tuner.batch_size_scaling import _scale_batch_size

        self.optimal_batch_size = _scale_batch_size(trainer, self._mode, self._steps_per_trial, self._init_val,
                                                    self._max_trials, self._batch_arg_name, self._margin,
                                                    self._max_val)
        if self._early_exit:
            raise _TunerExitException()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "validate":
            return
        self.scale_batch_size(trainer, pl_module)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)
