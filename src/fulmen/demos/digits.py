"""Demo: train a small CNN on the handwritten digits shipped with fulmen, then test it.

Run with `python -m fulmen.demos.digits` (or `fulmen-demo`). It needs no download: the 1797 8x8
digit images (UCI, CC BY 4.0) ship inside the package. It shows the progress bar and validation
accuracy per epoch, tests the best checkpoint, and writes logs and checkpoints under the run directory.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import time
from importlib import resources

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as L
from fulmen.callbacks import ModelCheckpoint


def load_digits() -> TensorDataset:
    """The digits as a dataset of (1x8x8 float image in [0, 1], int label)."""
    with resources.files("fulmen.demos").joinpath("data/digits.csv.gz").open("rb") as raw:
        rows = list(csv.reader(gzip.open(raw, "rt")))
    values = torch.tensor([[float(v) for v in row] for row in rows])
    images = (values[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    return TensorDataset(images, values[:, 64].long())


class DigitsDataModule(L.LightningDataModule):
    """Splits the digits 70/15/15 into train, validation and test sets with a fixed generator."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        dataset = load_digits()
        num_val = num_test = int(len(dataset) * 0.15)
        splits = [len(dataset) - num_val - num_test, num_val, num_test]
        self.train_set, self.val_set, self.test_set = random_split(
            dataset, splits, generator=torch.Generator().manual_seed(0))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)


class DigitClassifier(L.LightningModule):
    """Two 3x3 convolutions, max-pooling and a linear classifier with dropout."""

    def __init__(self, learning_rate: float = 2e-3, channels: int = 32) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.features = nn.Sequential(
            nn.Conv2d(1, channels // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels // 2, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(channels * 16, 10))
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))

    def _loss_and_accuracy(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        return F.cross_entropy(logits, labels), (logits.argmax(dim=1) == labels).float().mean()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss_and_accuracy(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, accuracy = self._loss_and_accuracy(batch)
        self.log("val_loss", loss)
        self.log("val_acc", accuracy, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, accuracy = self._loss_and_accuracy(batch)
        self.log("test_loss", loss)
        self.log("test_acc", accuracy)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.learning_rate)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.max_epochs or 10)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class EpochReport(L.Callback):
    """Print one line per epoch so the validation accuracy can be seen improving."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        trainer.print(f"epoch {trainer.current_epoch:2d}: val_loss={metrics['val_loss']:.4f} "
                      f"val_acc={metrics['val_acc']:.4f}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--root-dir", default="fulmen_runs/digits", help="where logs and checkpoints go")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    started = time.perf_counter()
    L.seed_everything(args.seed)
    datamodule = DigitsDataModule()
    model = DigitClassifier()
    best = ModelCheckpoint(monitor="val_acc", mode="max", filename="{epoch}-{val_acc:.4f}", save_last=True)
    trainer = L.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root_dir,
                        callbacks=[EpochReport(), best], accelerator="auto", devices=1)
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(datamodule=datamodule, ckpt_path="best")[0]
    run_dir = trainer.log_dir
    elapsed = time.perf_counter() - started
    print(f"\nBest checkpoint: {best.best_model_path} (val_acc={best.best_model_score:.4f})")
    print(f"Test accuracy of the best model: {results['test_acc']:.4f} (chance: 0.10) in {elapsed:.1f} s")
    print(f"Run directory: {os.path.abspath(run_dir)}")
    for entry in sorted(os.listdir(run_dir)):
        print(f"  {entry}")
    print(f"Plot the curves with: python -m fulmen plot {run_dir}   (needs matplotlib)")
    return results


if __name__ == "__main__":
    main()
