"""The small random datasets and models that bug reports and tests build on (Lightning's `demos.boring_classes`).

Shapes, random draws, losses, optimizers and schedulers match Lightning 2.6's classes of the same names, so a
script written against those behaves the same here. For testing and debugging only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.utilities.apply_func import apply_to_collection
from fulmen.utilities.types import STEP_OUTPUT

__all__ = ["BoringDataModule", "BoringDataModuleNoLen", "BoringModel", "DemoModel", "IterableBoringDataModule",
           "ManualOptimBoringModel", "Net", "RandomDataset", "RandomDictDataset", "RandomIterableDataset",
           "RandomIterableDatasetWithLen"]


class RandomDataset(Dataset):
    """`length` random vectors of `size` features, drawn once (`torch.randn`) when the dataset is built."""

    def __init__(self, size: int, length: int):
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    def __len__(self) -> int:
        return self.len


class RandomDictDataset(Dataset):
    """Like `RandomDataset`, but each item is `{"a": x, "b": x + 2}`."""

    def __init__(self, size: int, length: int):
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        row = self.data[index]
        return {"a": row, "b": row + 2}

    def __len__(self) -> int:
        return self.len


class RandomIterableDataset(IterableDataset):
    """Yields `count` fresh random vectors of `size` features per pass; has no length."""

    def __init__(self, size: int, count: int):
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(self.count):
            yield torch.randn(self.size)


class RandomIterableDatasetWithLen(IterableDataset):
    """`RandomIterableDataset` that also reports its length (`count`)."""

    def __init__(self, size: int, count: int):
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(len(self)):
            yield torch.randn(self.size)

    def __len__(self) -> int:
        return self.count


def _loader(dataset: Dataset) -> DataLoader:
    return DataLoader(dataset)  # batch_size 1, no shuffling, as in Lightning's boring classes


class BoringModel(LightningModule):
    """A `Linear(32, 2)` trained towards all-ones outputs with SGD(lr=0.1) and StepLR(step_size=1).

    Each stage has its own dataloader of `RandomDataset(32, 64)` (batch size 1). Subclass it and override what
    a test or bug report needs. The steps return `{"loss": ...}` (training), `{"x": ...}` (validation) and
    `{"y": ...}` (test).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(32, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def loss(self, preds: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean squared error against `labels`, or against ones when no labels are given."""
        target = torch.ones_like(preds) if labels is None else labels
        return F.mse_loss(preds, target)

    def step(self, batch: Any) -> Tensor:
        """The loss of the model's output on `batch`."""
        return self.loss(self(batch))

    def training_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return {"loss": self.step(batch)}

    def validation_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return {"x": self.step(batch)}

    def test_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return {"y": self.step(batch)}

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LRScheduler]]:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    def train_dataloader(self) -> DataLoader:
        return _loader(RandomDataset(32, 64))

    def val_dataloader(self) -> DataLoader:
        return _loader(RandomDataset(32, 64))

    def test_dataloader(self) -> DataLoader:
        return _loader(RandomDataset(32, 64))

    def predict_dataloader(self) -> DataLoader:
        return _loader(RandomDataset(32, 64))


class _RandomSplits(LightningDataModule):
    """Dataloaders (batch size 1) over the `random_train/val/test/predict` datasets `setup` makes."""

    def train_dataloader(self) -> DataLoader:
        return _loader(self.random_train)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.random_val)

    def test_dataloader(self) -> DataLoader:
        return _loader(self.random_test)

    def predict_dataloader(self) -> DataLoader:
        return _loader(self.random_predict)


class BoringDataModule(_RandomSplits):
    """256 random 32-feature rows (`RandomDataset(32, 256)`, drawn at construction), split into four
    consecutive blocks of 64 for train, val, test and predict; each loader has batch size 1."""

    def __init__(self) -> None:
        super().__init__()
        self.random_full = RandomDataset(32, 64 * 4)

    def setup(self, stage: str) -> None:
        # Lightning's split: fit builds train and val, validate builds val; test and predict their own block.
        if stage == "fit":
            self.random_train = Subset(self.random_full, indices=range(0, 64))
        if stage in ("fit", "validate"):
            self.random_val = Subset(self.random_full, indices=range(64, 128))
        if stage == "test":
            self.random_test = Subset(self.random_full, indices=range(128, 192))
        if stage == "predict":
            self.random_predict = Subset(self.random_full, indices=range(192, 256))


class BoringDataModuleNoLen(_RandomSplits):
    """Loaders over `RandomIterableDataset`s (no length): 512 train, 128 val, 256 test, 64 predict batches."""

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.random_train = RandomIterableDataset(32, 512)
        if stage in ("fit", "validate"):
            self.random_val = RandomIterableDataset(32, 128)
        if stage == "test":
            self.random_test = RandomIterableDataset(32, 256)
        if stage == "predict":
            self.random_predict = RandomIterableDataset(32, 64)


class IterableBoringDataModule(LightningDataModule):
    """Each stage gets a list of two loaders of 4-feature rows: one map-style (`RandomDataset`) and one
    iterable (`RandomIterableDataset`), 16 / 32 / 64 / 128 rows each for train / val / test / predict."""

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_datasets = [RandomDataset(4, 16), RandomIterableDataset(4, 16)]
        if stage in ("fit", "validate"):
            self.val_datasets = [RandomDataset(4, 32), RandomIterableDataset(4, 32)]
        if stage == "test":
            self.test_datasets = [RandomDataset(4, 64), RandomIterableDataset(4, 64)]
        if stage == "predict":
            self.predict_datasets = [RandomDataset(4, 128), RandomIterableDataset(4, 128)]

    def train_dataloader(self) -> Iterable[DataLoader]:
        return apply_to_collection(self.train_datasets, Dataset, _loader)

    def val_dataloader(self) -> Iterable[DataLoader]:
        return apply_to_collection(self.val_datasets, Dataset, _loader)

    def test_dataloader(self) -> Iterable[DataLoader]:
        return apply_to_collection(self.test_datasets, Dataset, _loader)

    def predict_dataloader(self) -> Iterable[DataLoader]:
        return apply_to_collection(self.predict_datasets, Dataset, _loader)


class ManualOptimBoringModel(BoringModel):
    """`BoringModel` with manual optimization: each training step zeroes, backpropagates and steps itself,
    and returns the loss tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        optimizer = self.optimizers()
        loss = self.step(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss


class DemoModel(LightningModule):
    """`relu(Linear(32, out_dim))` over flattened inputs, trained to shrink the output's sum with Adam."""

    def __init__(self, out_dim: int = 10, learning_rate: float = 0.02):
        super().__init__()
        self.l1 = nn.Linear(32, out_dim)
        self.learning_rate = learning_rate

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.l1(x.view(x.size(0), -1)))

    def training_step(self, batch: Any, batch_nb: int) -> STEP_OUTPUT:
        return self(batch).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class Net(nn.Module):
    """A small MNIST-style convolutional classifier: `(N, 1, 28, 28)` images to `(N, 10)` log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)
