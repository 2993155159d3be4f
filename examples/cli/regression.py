"""A LightningCLI script: a small regression model and its datamodule, configured from the command line / YAML.

    python examples/cli/regression.py fit --config examples/cli/config.yaml
    python examples/cli/regression.py fit --config examples/cli/config.yaml --model.hidden=32 --trainer.max_epochs=5
    python examples/cli/regression.py fit --print_config        # the full config, every default included
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as L
from fulmen.cli import LightningCLI


class Regressor(L.LightningModule):
    """A two-layer network fitting a noisy linear target.

    Args:
        in_features: number of input features.
        hidden: width of the hidden layer.
        lr: learning rate of the default SGD optimizer (`--optimizer` replaces it).
    """

    def __init__(self, in_features: int = 8, hidden: int = 16, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class SyntheticData(L.LightningDataModule):
    """Random inputs and a fixed linear target plus noise.

    Args:
        num_samples: total number of samples (80% train, 20% validation; the test set is the validation set).
        in_features: number of input features.
        batch_size: batch size of every dataloader.
        seed: seed of the data generator (the data do not depend on `--seed_everything`).
    """

    def __init__(self, num_samples: int = 256, in_features: int = 8, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.num_samples, self.in_features, self.batch_size, self.seed = num_samples, in_features, batch_size, seed

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.num_samples, self.in_features, generator=generator)
        weight = torch.randn(self.in_features, 1, generator=generator)
        y = x @ weight + 0.1 * torch.randn(self.num_samples, 1, generator=generator)
        n_val = self.num_samples // 5
        self.train_set, self.val_set = random_split(TensorDataset(x, y), [self.num_samples - n_val, n_val],
                                                    generator=generator)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return self.val_dataloader()


class RegressionCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        # One value sets both: the data's feature count is the model's input size.
        parser.link_arguments("data.in_features", "model.in_features")


def main(args=None):
    return RegressionCLI(Regressor, SyntheticData, args=args)


if __name__ == "__main__":
    main()
