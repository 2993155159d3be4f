"""Modules that turn non-finite on purpose, for the non-finite guard's tests (module level: ddp_spawn pickles them).

`NaNAt` is a Linear(32, 2) regression whose loss becomes NaN at the chosen global steps (on the chosen ranks);
it records the weights around each batch and, with `out_dir`, writes a per-rank report in `teardown`.
"""

import json
import os

import torch
from torch import nn
from torch.nn import functional as F

import fulmen as L


class NaNAt(L.LightningModule):
    """Args:
        steps: global steps whose loss is NaN (read at `training_step`).
        ranks: the global ranks that make it NaN (None: all).
        grad_only: leave the loss finite and set one bias gradient to `grad_value` instead (after backward).
        value_only: make only the loss value NaN (a constant added), its gradients stay finite.
        out_dir: where each rank writes `nonfinite_rank<N>.json` in teardown (None: nowhere).
    """

    def __init__(self, steps=(3,), ranks=None, grad_only=False, value_only=False, out_dir=None,
                 grad_value=float("inf")):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.layer = nn.Linear(32, 2)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(self.layer.weight.shape, generator=generator) * 0.2)
            self.layer.bias.zero_()
        self.steps, self.ranks, self.grad_only, self.out_dir = set(steps), ranks, grad_only, out_dir
        self.value_only, self.grad_value = value_only, grad_value
        self.weights_before = {}
        self.weights_after = {}

    def _bad_here(self):
        return self.trainer.global_step in self.steps and (self.ranks is None or self.global_rank in self.ranks)

    def training_step(self, batch, batch_idx):
        x, y = batch[-2:]
        loss = F.mse_loss(self.layer(x), F.one_hot(y, 2).float() if y.dtype == torch.long else y)
        if self._bad_here() and not self.grad_only:
            loss = loss + torch.tensor(float("nan")) if self.value_only else loss * float("nan")
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_after_backward(self):
        if self._bad_here() and self.grad_only:
            self.layer.bias.grad[0] = self.grad_value

    def on_train_batch_start(self, batch, batch_idx):
        self.weights_before[self.trainer.global_step] = self.layer.weight.detach().clone()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.weights_after[self.trainer.global_step - 1] = self.layer.weight.detach().clone()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def teardown(self, stage):
        if self.out_dir is None:
            return
        guard = self.trainer.nonfinite_guard
        report = {"rank": self.global_rank, "global_step": self.trainer.global_step,
                  "skipped": guard.skipped_steps, "checkpoint": guard.checkpoint_path, "reports": guard.reports,
                  "should_stop": self.trainer.should_stop, "weight": self.layer.weight.detach().tolist(),
                  "finite": bool(torch.isfinite(self.layer.weight).all())}
        with open(os.path.join(self.out_dir, f"nonfinite_rank{self.global_rank}.json"), "w") as file:
            json.dump(report, file)


def load_rank_reports(out_dir, world_size=2):
    reports = []
    for rank in range(world_size):
        with open(os.path.join(out_dir, f"nonfinite_rank{rank}.json")) as file:
            reports.append(json.load(file))
    return reports


class ManualNaN(NaNAt):
    """Manual optimization: one optimizer stepped in `training_step`; the loss at the chosen steps is NaN."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        x, y = batch
        loss = F.mse_loss(self.layer(x), F.one_hot(y, 2).float())
        if self._bad_here():
            loss = loss * float("nan")
        self.manual_backward(loss)
        opt.step()
        self.log("train_loss", loss)
