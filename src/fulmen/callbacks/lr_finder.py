"""LearningRateFinder: runs the learning-rate range test when fit starts (Lightning's `callbacks.lr_finder`)."""

from __future__ import annotations

from typing import Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import _TunerExitException
from fulmen.utilities.seed import isolate_rng


class LearningRateFinder(Callback):
    """Finds a good initial learning rate at the start of `fit` (see `Tuner.lr_find`); the result is `optimal_lr`.

    Args:
        min_lr: the first learning rate tried.
        max_lr: the last learning rate tried.
        num_training_steps: how many learning rates (optimizer steps) to try.
        mode: "exponential" or "linear": how the learning rate rises after each step.
        early_stop_threshold: stop once the smoothed loss exceeds this many times the best; None never stops early.
        update_attr: set the suggestion on the model's learning-rate attribute (and the optimizer).
        attr_name: that attribute; by default `lr` or `learning_rate` of the model or its hparams.

    Override `on_fit_start` and call `self.lr_find(trainer, pl_module)` from another hook to search elsewhere
    (e.g. at chosen epochs while fine-tuning).
    """

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"`mode` should be either of {self.SUPPORTED_MODES}; received {mode!r}.")
        self._min_lr, self._max_lr = min_lr, max_lr
        self._num_training_steps = num_training_steps
        self._mode = mode
        self._early_stop_threshold = early_stop_threshold
        self._update_attr, self._attr_name = update_attr, attr_name
        self._early_exit = False
        self.optimal_lr: Any = None  # the `_LRFinder` result of the latest search

    def lr_find(self, trainer: Any, pl_module: Any) -> None:
        """Run the search now; the run continues from the state it had before (RNG included)."""
        from fulmen.tuner.lr_finder import _lr_find

        with isolate_rng():
            self.optimal_lr = _lr_find(trainer, pl_module, min_lr=self._min_lr, max_lr=self._max_lr,
                                       num_training=self._num_training_steps, mode=self._mode,
                                       early_stop_threshold=self._early_stop_threshold,
                                       update_attr=self._update_attr, attr_name=self._attr_name)
        if self._early_exit:
            raise _TunerExitException()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.lr_find(trainer, pl_module)
