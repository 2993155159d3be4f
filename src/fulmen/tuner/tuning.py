"""Tuner: finds a learning rate or a batch size by running the Trainer a little (Lightning's `tuner.tuning`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer
    from fulmen.tuner.lr_finder import _LRFinder

_METHODS = ("fit", "validate", "test", "predict")


class Tuner:
    """Tunes a model's learning rate or batch size with `trainer`; the model and the Trainer are left as they
    were, except for the attribute the tuner sets."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def scale_batch_size(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: LightningDataModule | None = None,
                         method: Literal["fit", "validate", "test", "predict"] = "fit", mode: str = "power",
                         steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> int | None:
        """Find the largest batch size that runs `steps_per_trial` steps of `method` without running out of memory.

        `mode="power"` doubles from `init_val` until a size fails; `"binsearch"` then bisects between the last
        size that ran and the first that failed, and takes `margin` off the result. At most `max_trials` trials,
        sizes up to `max_val`. The size is set on `batch_arg_name` of the model, its hparams or the datamodule
        (where the dataloaders must read it), and returned.
        """
        _check_tuner_configuration(train_dataloaders, val_dataloaders, dataloaders, method)
        from fulmen.callbacks.batch_size_finder import BatchSizeFinder
        from fulmen.tuner.batch_size_scaling import _check_margin

        trainer = self._trainer
        if trainer.strategy.launcher is not None or trainer.world_size > 1:
            raise ValueError("Tuning the batch size is currently not supported with distributed strategies.")
        _check_not_configured(trainer, BatchSizeFinder)
        _check_margin(margin)
        finder = BatchSizeFinder(mode=mode, steps_per_trial=steps_per_trial, init_val=init_val, max_trials=max_trials,
                                 batch_arg_name=batch_arg_name, margin=margin, max_val=max_val)
        finder._early_exit = True
        self._run(finder, model, method, train_dataloaders, val_dataloaders, dataloaders, datamodule)
        return finder.optimal_batch_size

    def lr_find(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
                dataloaders: Any = None, datamodule: LightningDataModule | None = None,
                method: Literal["fit", "validate", "test", "predict"] = "fit", min_lr: float = 1e-8,
                max_lr: float = 1, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                attr_name: str = "") -> _LRFinder | None:
        """Train `num_training` steps with the learning rate rising from `min_lr` to `max_lr` (`mode`
        "exponential" or "linear"), stopping early once the smoothed loss exceeds `early_stop_threshold` times
        the best (None: never). Returns the result (`results`, `suggestion()`, `plot()`); with `update_attr` the
        suggestion is set on `attr_name` (default: `lr` or `learning_rate` of the model or its hparams)."""
        if method != "fit":
            raise MisconfigurationException("method='fit' is the only valid configuration to run lr finder.")
        _check_tuner_configuration(train_dataloaders, val_dataloaders, dataloaders, method)
        from fulmen.callbacks.lr_finder import LearningRateFinder

        _check_not_configured(self._trainer, LearningRateFinder)
        finder = LearningRateFinder(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_training, mode=mode,
                                    early_stop_threshold=early_stop_threshold, update_attr=update_attr,
                                    attr_name=attr_name)
        finder._early_exit = True
        self._run(finder, model, "fit", train_dataloaders, val_dataloaders, None, datamodule)
        return finder.optimal_lr

    def _run(self, finder: Any, model: Any, method: str, train_dataloaders: Any, val_dataloaders: Any,
             dataloaders: Any, datamodule: Any) -> None:
        """Run `method` with `finder` as the first callback; it ends the call once it has tuned."""
        from fulmen.trainer.trial import first_callback

        trainer = self._trainer
        with first_callback(trainer, finder):
            if method == "fit":
                trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
            elif method == "validate":
                trainer.validate(model, dataloaders, datamodule=datamodule)
            elif method == "test":
                trainer.test(model, dataloaders, datamodule=datamodule)
            else:
                trainer.predict(model, dataloaders, datamodule=datamodule)

def _check_tuner_configuration(train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any, method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method {method!r} is invalid. Should be one of {_METHODS}.")
    if method == "fit":
        if dataloaders is not None:
            raise MisconfigurationException(f"In tuner with method={method!r}, `dataloaders` argument should be None, "
                                            "please consider setting `train_dataloaders` and `val_dataloaders` "
                                            "instead.")
    elif train_dataloaders is not None or val_dataloaders is not None:
        raise MisconfigurationException(f"In tuner with `method`={method!r}, `train_dataloaders` and "
                                        "`val_dataloaders` arguments should be None, please consider setting "
                                        "`dataloaders` instead.")


def _check_not_configured(trainer: Any, kind: type) -> None:
    if any(isinstance(callback, kind) for callback in trainer.callbacks):
        raise ValueError(f"Trainer is already configured with a `{kind.__name__}` callback. Please remove it if you "
                         "want to use the Tuner.")
