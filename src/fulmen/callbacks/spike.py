"""SpikeDetection: stop training with `TrainingSpikeException` when the loss jumps away from its running mean,
after writing the indices of the batches to skip when training again."""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from fulmen.callbacks.callback import Callback

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class TrainingSpikeException(RuntimeError):
    """Raised by `SpikeDetection` when a training loss spike was detected."""

    def __init__(self, batch_idx: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args, **kwargs)


class SpikeDetection(Callback):
    """Detect a loss spike after each training batch and stop with `TrainingSpikeException`.

    A loss is a spike when it is not an improvement over the previous batch's loss and differs from the mean of the
    last `window` losses by at least `atol` and by at least `rtol * mean` (a tolerance of None always passes). The
    spiking batch and the one before it are appended to `bad_batches`, and rank 0 writes that list as JSON.

    Args:
        mode: "min" (a lower loss is better) or "max".
        window: how many recent losses the running mean covers.
        warmup: the first batch index of each epoch that is checked.
        atol: absolute tolerance, or None.
        rtol: relative tolerance (times the running mean), or None.
        exclude_batches_path: where the JSON list goes: a ".json" file, or a directory (then `skip_batches.json`
            in it); default `<default_root_dir>/skip_batches.json`.
        finite_only: when True, a NaN/inf loss is a spike; when False, a non-finite loss is judged like any other
            (an inf counts, a NaN never does) and left out of the running mean.
    """

    def __init__(self, mode: Literal["min", "max"] = "min", window: int = 10, warmup: int = 1,
                 atol: float | None = None, rtol: float | None = 2.0,
                 exclude_batches_path: str | os.PathLike | None = None, finite_only: bool = True) -> None:
        if mode not in ("min", "max"):
            # Lightning accepts it here and fails at the first checked batch; same message, earlier.
            raise ValueError(f"Invalid mode. Has to be min or max, found {mode}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"`SpikeDetection(window={window!r})`: pass the number of recent losses to average "
                             "(an int >= 1).")
        self.last_val: torch.Tensor | float = 0.0
        self.running_mean: deque[torch.Tensor] = deque(maxlen=window)  # the last `window` losses
        self.mode = mode
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.bad_batches: list[int] = []
        self.exclude_batches_path = exclude_batches_path
        self.finite_only = finite_only

    @torch.no_grad()
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if isinstance(outputs, torch.Tensor):
            loss = outputs.detach()
        elif isinstance(outputs, Mapping):
            if "loss" not in outputs:  # Lightning: a bare KeyError
                raise KeyError("SpikeDetection watches the training loss, but `training_step` returned no 'loss': "
                               "return the loss tensor, or a dict holding it under 'loss'.")
            loss = outputs["loss"].detach()
        else:
            raise TypeError(f"outputs have to be of type torch.Tensor or Mapping, got {type(outputs).__qualname__}: "
                            "return the loss (or a dict with 'loss') from `training_step`.")
        if self.exclude_batches_path is None:
            self.exclude_batches_path = os.path.join(trainer.default_root_dir, "skip_batches.json")
        if not str(self.exclude_batches_path).endswith(".json"):
            self.exclude_batches_path = os.path.join(self.exclude_batches_path, "skip_batches.json")

        strategy = trainer.strategy
        is_spike = batch_idx >= self.warmup and self._is_spike(loss)
        strategy.barrier()
        # Each rank judges its own loss; if any rank saw a spike, all stop.
        if strategy.reduce_boolean_decision(is_spike, all=False):
            self._handle_spike(trainer, batch_idx)
        elif self.finite_only or strategy.reduce_boolean_decision(bool(torch.isfinite(loss).all()), all=True):
            self.running_mean.append(loss)
            self.last_val = loss

    def _running_value(self, device: torch.device) -> torch.Tensor | float:
        if not self.running_mean:
            return math.nan
        return torch.stack([value.to(device) for value in self.running_mean]).float().mean()

    def _is_spike(self, loss: torch.Tensor) -> bool:
        if self.finite_only and not bool(torch.isfinite(loss).all()):
            return True
        difference = loss - self.last_val
        better = difference <= 0.0 if self.mode == "min" else difference >= 0
        if bool(better.all()):
            return False
        mean = self._running_value(loss.device)
        # A comparison with a NaN mean (nothing averaged yet) is False: no spike.
        atol_ok = self.atol is None or bool(abs(loss - mean) >= abs(self.atol))
        rtol_ok = self.rtol is None or bool(abs(loss - mean) >= abs(self.rtol * mean))
        return atol_ok and rtol_ok

    def _handle_spike(self, trainer: Trainer, batch_idx: int) -> None:
        # The batch before may have corrupted the weights that made this one spike: skip both.
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if trainer.global_rank == 0:
            path = os.fspath(self.exclude_batches_path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as file:
                json.dump(self.bad_batches, file, indent=4)
        raise TrainingSpikeException(batch_idx=batch_idx)

    def state_dict(self) -> dict[str, Any]:
        last = self.last_val.item() if isinstance(self.last_val, torch.Tensor) else self.last_val
        return {"last_val": last, "mode": self.mode, "warmup": self.warmup, "atol": self.atol, "rtol": self.rtol,
                "bad_batches": self.bad_batches, "bad_batches_path": self.exclude_batches_path,
                # Lightning keeps its torchmetrics states out of the checkpoint (and fails to load it); fulmen
                # saves the window so a resumed run judges the next losses against the same mean.
                "running": {"values": [value.item() for value in self.running_mean], "window":
                            self.running_mean.maxlen}, "mean": {}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_val = state_dict["last_val"]
        self.mode = state_dict["mode"]
        self.warmup = state_dict["warmup"]
        self.atol = state_dict["atol"]
        self.rtol = state_dict["rtol"]
        self.bad_batches = list(state_dict["bad_batches"])
        self.exclude_batches_path = state_dict["bad_batches_path"]
        running = state_dict.get("running") or {}
        window = running.get("window", self.running_mean.maxlen)
        self.running_mean = deque((torch.tensor(value) for value in running.get("values", [])), maxlen=window)
