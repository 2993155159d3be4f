"""Small modules and datamodules for the LightningCLI tests (importable as `helpers.cli_models`).

String annotations (`from __future__ import annotations`), as in fulmen and many user projects: the CLI must
still see real types.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L


class CLIModel(L.LightningModule):
    """A tiny regressor.

    Args:
        hidden: width of the hidden layer.
        lr: learning rate of its own SGD optimizer.
    """

    def __init__(self, hidden: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class WiderModel(CLIModel):
    """A subclass, for subclass mode.

    Args:
        extra: an extra argument only this subclass has.
    """

    def __init__(self, extra: int = 2, hidden: int = 4, lr: float = 0.1) -> None:
        super().__init__(hidden=hidden + extra, lr=lr)
        self.extra = extra


class CLIData(L.LightningDataModule):
    """Fixed random regression data.

    Args:
        batch_size: batch size of every loader.
        num_samples: number of samples.
    """

    def __init__(self, batch_size: int = 4, num_samples: int = 16) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.num_outputs = 1  # known only once built: the target of an instantiate-time link

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.num_samples, 3, generator=generator)
        self.dataset = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def predict_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)


class LinkedModel(CLIModel):
    """A module whose arguments come from the datamodule through links.

    Args:
        batch_size: linked from `data.batch_size` at parse time.
        num_outputs: linked from the built datamodule's `num_outputs` at instantiation time.
    """

    def __init__(self, batch_size: int = 0, num_outputs: int = 0, hidden: int = 4, lr: float = 0.1) -> None:
        super().__init__(hidden=hidden, lr=lr)
        self.batch_size = batch_size
        self.num_outputs = num_outputs
