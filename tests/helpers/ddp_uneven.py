"""A module whose validation data is empty on rank 1 only, for the 2-rank zero-length dataloader tests.

At module level so "ddp_spawn" can pickle it.
"""

import json
import os

import torch
from torch.utils.data import DataLoader

import fulmen as L


class EmptyOnRankOne(L.LightningModule):
    def __init__(self, out_dir, allow):
        super().__init__()
        self.out_dir = out_dir
        self.allow_zero_length_dataloader_with_multiple_devices = allow
        self.layer = torch.nn.Linear(1, 1)
        self.val_batches = 0

    def training_step(self, batch, batch_idx):
        return self.layer(batch.float().view(-1, 1)).sum()

    def validation_step(self, batch, batch_idx):
        self.val_batches += 1

    def train_dataloader(self):
        return DataLoader(torch.arange(4), batch_size=1)

    def val_dataloader(self):
        data = torch.arange(4) if self.global_rank == 0 else torch.arange(0)
        return DataLoader(data, batch_size=1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def on_train_end(self):
        report = {"val_batches": self.val_batches, "num_val_batches": self.trainer.num_val_batches}
        with open(os.path.join(self.out_dir, f"rank{self.global_rank}.json"), "w") as handle:
            json.dump(report, handle)
