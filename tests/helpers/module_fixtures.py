"""Small modules, data and a quiet Trainer factory for the core/utilities/callbacks/strategies tests."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import fulmen as L

IN_FEATURES = 32
OUT_FEATURES = 2


class VectorDataset(Dataset):
    """`length` fixed random float vectors of `size` features."""

    def __init__(self, length=64, size=IN_FEATURES, seed=7):
        generator = torch.Generator().manual_seed(seed)
        self.data = torch.randn(length, size, generator=generator)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.data[index]


def vector_loader(length=64, batch_size=16, **kwargs):
    return DataLoader(VectorDataset(length), batch_size=batch_size, **kwargs)


class LinearModule(L.LightningModule):
    """`Linear(32, 2)` trained with SGD on the sum of its outputs; logs `loss` to the progress bar."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(IN_FEATURES, OUT_FEATURES)

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        loss = self(batch).sum()
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LinearModuleWithValidation(LinearModule):
    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self(batch).sum())


def quiet_trainer(tmp_path, **kwargs):
    """A Trainer on CPU without logger, progress bar, summary or checkpoints unless overridden."""
    options = dict(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, max_epochs=1, limit_train_batches=2,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return L.Trainer(**options)
