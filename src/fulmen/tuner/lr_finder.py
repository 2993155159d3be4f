"""The learning-rate range test (Lightning's `tuner.lr_finder`): train a few steps with a rising learning rate,
record the smoothed loss at each, and suggest the learning rate where it falls fastest."""

from __future__ import annotations

import logging
import math
import sys
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from fulmen.callbacks.callback import Callback
from fulmen.optimization.configure_optimizers import LRSchedulerConfig
from fulmen.optimization.placeholder import PlaceholderOptimizer
from fulmen.trainer.trial import Trial
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.parsing import lightning_hasattr, lightning_setattr
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule

log = logging.getLogger(__name__)

LR_ATTRIBUTES = ("lr", "learning_rate")


def _determine_lr_attr_name(model: LightningModule, attr_name: str = "") -> str:
    """The attribute holding the learning rate: `attr_name` if given, else `lr` or `learning_rate`."""
    if attr_name:
        if not lightning_hasattr(model, attr_name):
            raise AttributeError(f"The attribute name for the learning rate was set to {attr_name}, but could not find "
                                 "this as a field in `model` or `model.hparams`.")
        return attr_name
    for name in LR_ATTRIBUTES:
        if lightning_hasattr(model, name):
            return name
    raise AttributeError(f"When using the learning rate finder, either `model` or `model.hparams` should have one of "
                         f"these fields: {LR_ATTRIBUTES}. If your model has a different name for the learning rate, "
                         "set it with `.lr_find(attr_name=...)`.")


class _RisingLR(LRScheduler):
    """From the optimizer's learning rate to `end_lr` over `num_iter` steps, exponentially or linearly.

    Lightning's schedule, quirk included: the first value is the start, the next is already step 2 of `num_iter`
    (`start * (end/start) ** (2/num_iter)`), and step `num_iter - 1` reaches `end_lr`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, end_lr: float, num_iter: int, exponential: bool) -> None:
        self.end_lr, self.num_iter, self.exponential = end_lr, num_iter, exponential
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self.last_epoch <= 0:
            self._lr = list(self.base_lrs)
            return self._lr
        fraction = (self.last_epoch + 1) / self.num_iter
        if self.exponential:
            self._lr = [base * (self.end_lr / base) ** fraction for base in self.base_lrs]
        else:
            self._lr = [base + fraction * (self.end_lr - base) for base in self.base_lrs]
        return self._lr

    @property
    def lr(self) -> list[float]:
        return self._lr


class _LRFinder:
    """The result of `Tuner.lr_find`: `results` (`{"lr": [...], "loss": [...]}`, one entry per optimizer step),
    `suggestion()` and `plot()`.

    Args:
        mode: "exponential" or "linear": how the learning rate rises after each step.
        lr_min: the first learning rate tried.
        lr_max: the last learning rate tried.
        num_training: steps from `lr_min` to `lr_max`.
    """

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        if mode not in ("linear", "exponential"):
            raise ValueError(f"`mode` should be either of ('linear', 'exponential'); received {mode!r}.")
        self.mode, self.lr_min, self.lr_max, self.num_training = mode, lr_min, lr_max, num_training
        self.results: dict[str, list[float]] = {}
        self._total_batch_idx = 0
        self._optimal_idx: int | None = None

    def _exchange_scheduler(self, optimization: Any, automatic: bool = True) -> LRScheduler:
        """Start the only optimizer at `lr_min` under the rising schedule, in place of the module's schedulers."""
        optimizers = [opt for opt in optimization.optimizers if not isinstance(opt, PlaceholderOptimizer)]
        if len(optimizers) != 1:
            raise MisconfigurationException(f"`model.configure_optimizers()` returned {len(optimizers)}, but learning "
                                            "rate finder only works with single optimizer")
        optimizer = optimizers[0]
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.lr_min
        scheduler = _RisingLR(optimizer, self.lr_max, self.num_training, self.mode == "exponential")
        configs = [LRSchedulerConfig(scheduler, interval="step")]
        optimization.scheduler_configs = configs
        optimization.automatic_schedulers = configs if automatic else []  # manual optimization steps none
        return scheduler

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the loss falls fastest (the most negative gradient of loss over lr), leaving out
        `skip_begin` points at the start and `skip_end` at the end, and non-finite losses; None with under 2 points."""
        losses = torch.tensor(self.results["loss"][skip_begin:-skip_end])
        lrs = torch.tensor(self.results["lr"][skip_begin:-skip_end])
        finite = torch.isfinite(losses)
        losses, lrs = losses[finite], lrs[finite]
        if len(losses) < 2:
            log.error("Failed to compute suggestion for learning rate because there are not enough points. Increase "
                      "the loop iteration limits or the size of your dataset/dataloader.")
            self._optimal_idx = None
            return None
        gradients = torch.gradient(losses, spacing=[lrs])[0]
        steepest = int(torch.argmin(gradients).item())
        kept = torch.arange(len(self.results["loss"]))[skip_begin:-skip_end][finite]
        self._optimal_idx = int(kept[steepest].item())
        return self.results["lr"][self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """A matplotlib figure of loss against learning rate (log scale for "exponential"), the suggestion marked
        in red if `suggest`; drawn on `ax` if given; shown if `show`. Needs matplotlib."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise MisconfigurationException("To use the `plot` method, you must have Matplotlib installed. Install it "
                                            "by running `pip install -U matplotlib`.") from error
        lrs, losses = self.results["lr"], self.results["loss"]
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        ax.plot(lrs, losses, label="smoothed loss")
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        ax.set_title(f"Learning rate range test ({len(lrs)} steps, {self.mode})")
        ax.grid(True, which="both", alpha=0.3)
        if suggest:
            self.suggestion()
            if self._optimal_idx:  # Lightning marks nothing when the steepest point is index 0
                best = self._optimal_idx
                ax.plot(lrs[best], losses[best], markersize=10, marker="o", color="red",
                        label=f"suggested lr = {lrs[best]:.3g}")
                ax.legend()
        if show:
            plt.show()
        return fig


class _LRCallback(Callback):
    """Records the learning rate before each optimizer step and the smoothed loss after it; stops the search
    once the smoothed loss passes `early_stop_threshold` times the best one."""

    def __init__(self, scheduler: _RisingLR, num_training: int, early_stop_threshold: float | None,
                 progress_bar: bool, beta: float = 0.98) -> None:
        self.scheduler, self.num_training = scheduler, num_training
        self.early_stop_threshold, self.beta = early_stop_threshold, beta
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.avg_loss = 0.0
        self.best_loss = 0.0
        self.show_progress = progress_bar
        self.progress_bar: Any = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        if self.show_progress and self.progress_bar is None:
            from tqdm import tqdm

            self.progress_bar = tqdm(desc="Finding best initial lr", total=self.num_training, file=sys.stderr)
        self.lrs.append(self.scheduler.lr[0])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        if not outputs:
            self.losses.append(float("nan"))  # a skipped step: left out of the suggestion
            return
        if self.progress_bar is not None:
            self.progress_bar.update()
        loss = (outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]).item()
        step = trainer.global_step
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * loss
        # Lightning's bias correction counts from the trainer's global step (one ahead of the steps recorded).
        smoothed = self.avg_loss / (1 - self.beta ** (step + 1))
        if self.early_stop_threshold is not None and step > 1 and smoothed > self.early_stop_threshold * self.best_loss:
            trainer.should_stop = True
            self.close()
        trainer.should_stop = trainer.strategy.broadcast(trainer.should_stop)
        if smoothed < self.best_loss or step == 1:
            self.best_loss = smoothed
        self.losses.append(smoothed)

    def close(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None


def _lr_find(trainer: Any, model: LightningModule, min_lr: float = 1e-8, max_lr: float = 1, num_training: int = 100,
             mode: str = "exponential", early_stop_threshold: float | None = 4.0, update_attr: bool = False,
             attr_name: str = "") -> _LRFinder | None:
    """Run the range test inside the running `fit` and put the run back as it was; with `update_attr`, set the
    suggestion on the module's learning-rate attribute and the optimizer."""
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping learning rate finder since `fast_dev_run` is enabled.")
        return None
    if update_attr:
        attr_name = _determine_lr_attr_name(model, attr_name)
    finder = _LRFinder(mode, min_lr, max_lr, num_training)
    start_step = trainer.global_step
    flags = {"max_steps": num_training + start_step, "limit_val_batches": num_training, "num_sanity_val_steps": 0}
    callback: _LRCallback | None = None
    with Trial(trainer, [], flags) as trial:
        scheduler = finder._exchange_scheduler(trial.optimization, model.automatic_optimization)
        callback = _LRCallback(scheduler, num_training, early_stop_threshold, trainer.progress_bar_callback is not None)
        trial.callbacks = [callback]
        try:
            trial.run()
        finally:
            callback.close()
        if trainer.global_step != num_training + start_step:
            log.info(f"LR finder stopped early after {trainer.global_step} steps due to diverging loss.")
        finder.results = trainer.strategy.broadcast({"lr": callback.lrs, "loss": callback.losses})
        finder._total_batch_idx = trial.run_state.fit_loop.total_batch_idx
    # The suggestion is applied after the run is put back, so it holds for the training that follows.
    if update_attr:
        lr = finder.suggestion()
        if lr is not None and not math.isnan(lr):
            lightning_setattr(model, attr_name, lr)
            for optimizer in trainer.optimizers or []:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            log.info(f"Learning rate set to {lr}")
    return finder
