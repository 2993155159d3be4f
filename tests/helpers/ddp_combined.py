"""A module for the 2-rank test of several training dataloaders: each rank writes the samples it drew per loader.

At module level so "ddp_spawn" can pickle it.
"""

import json
import os

import torch

import fulmen as L


class CombinedProbe(L.LightningModule):
    def __init__(self, out_dir):
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(1, 1)
        self.drawn = {"a": [], "b": []}

    def training_step(self, batch, batch_idx):
        for key in ("a", "b"):
            self.drawn[key].append([int(v) for v in batch[key].tolist()])
        return self.layer(batch["a"].float().view(-1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def on_train_end(self):
        report = {"drawn": self.drawn, "num_training_batches": self.trainer.num_training_batches}
        with open(os.path.join(self.out_dir, f"rank{self.global_rank}.json"), "w") as handle:
            json.dump(report, handle)
