"""MNIST for demos and tests (Lightning's `demos.mnist_datamodule`): torchvision's dataset when installed,
else the same processed tensors Lightning hosts, downloaded into `<data_dir>/MNIST/complete/`."""

from __future__ import annotations

import os
import platform
import urllib.error
from collections.abc import Sized
from typing import Any, Callable
from warnings import warn

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, random_split

from fulmen.core.datamodule import LightningDataModule
from fulmen.demos._download import download_file

__all__ = ["MNIST", "MNISTDataModule"]

_DATASETS_PATH = "./data"


class _MNIST(Dataset):
    """MNIST from the processed `training.pt` / `test.pt` files (each a `(uint8 images N x 28 x 28, labels)`
    tuple saved by `torch.save`) in `<root>/MNIST/complete/`. Items are `(1 x 28 x 28 float image, int label)`,
    the image standardised with `normalize=(mean, std)` unless it is None."""

    RESOURCES = (
        "https://pl-public-data.s3.amazonaws.com/MNIST/processed/training.pt",
        "https://pl-public-data.s3.amazonaws.com/MNIST/processed/test.pt",
    )
    TRAIN_FILE_NAME = "training.pt"
    TEST_FILE_NAME = "test.pt"
    cache_folder_name = "complete"

    def __init__(self, root: str, train: bool = True, normalize: tuple | None = (0.1307, 0.3081),
                 download: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        super().__init__()
        self.root = root
        self.train = train
        self.normalize = normalize
        self.transform = transform
        self.target_transform = target_transform
        self.prepare_data(download)
        file_name = self.TRAIN_FILE_NAME if train else self.TEST_FILE_NAME
        self.data, self.targets = self._load(os.path.join(self.cached_folder_path, file_name))

    def __getitem__(self, idx: int) -> tuple[Tensor, Any]:
        image = self.data[idx].float().unsqueeze(0)
        target: Any = int(self.targets[idx])
        if self.normalize is not None and len(self.normalize) == 2:
            image = self.normalize_tensor(image, *self.normalize)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __len__(self) -> int:
        return len(self.data)

    @property
    def cached_folder_path(self) -> str:
        return os.path.join(self.root, "MNIST", self.cache_folder_name)

    def _check_exists(self, data_folder: str) -> bool:
        return all(os.path.isfile(os.path.join(data_folder, name))
                   for name in (self.TRAIN_FILE_NAME, self.TEST_FILE_NAME))

    def prepare_data(self, download: bool = True) -> None:
        """Download both files unless present; raise if they are still missing."""
        folder = self.cached_folder_path
        if download and not self._check_exists(folder):
            for url in self.RESOURCES:
                destination = os.path.join(folder, os.path.basename(url))
                if not os.path.isfile(destination):
                    download_file(url, destination, "the root folder is `MNISTDataModule(data_dir=...)` or "
                                                    "`MNIST(root, ...)`")
        if not self._check_exists(folder):
            raise RuntimeError(
                f"MNIST not found: {self.TRAIN_FILE_NAME} and {self.TEST_FILE_NAME} must be in "
                f"{os.path.abspath(folder)}. Pass `download=True` to fetch them from {' and '.join(self.RESOURCES)}, "
                "or place them there yourself.")

    @staticmethod
    def _load(path: str) -> tuple[Tensor, Tensor]:
        # The files are plain tensors: the safe loader suffices. Downloads are atomic (temp file, then rename),
        # so a concurrent process never reads a half-written file.
        data, targets = torch.load(path, weights_only=True)
        return data, targets

    @staticmethod
    def normalize_tensor(tensor: Tensor, mean: int | float = 0.0, std: int | float = 1.0) -> Tensor:
        mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
        std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
        return tensor.sub(mean_t).div(std_t)


def _torchvision_mnist() -> type | None:
    """torchvision's MNIST class, unless torchvision is missing or `PL_USE_MOCKED_MNIST` is set."""
    if os.getenv("PL_USE_MOCKED_MNIST"):
        return None
    try:
        from torchvision.datasets import MNIST as TorchvisionMNIST
    except ImportError:
        return None
    return TorchvisionMNIST


def MNIST(*args: Any, **kwargs: Any) -> Dataset:
    """An MNIST dataset: `torchvision.datasets.MNIST(*args, **kwargs)` when torchvision is installed (and
    `PL_USE_MOCKED_MNIST` is unset), else one read from the processed files Lightning hosts, which takes
    `(root, train=True, normalize=(0.1307, 0.3081), download=True, transform=None, target_transform=None)`."""
    torchvision_mnist = _torchvision_mnist()
    if torchvision_mnist is not None:
        try:
            return torchvision_mnist(*args, **kwargs)
        except urllib.error.HTTPError as error:
            # As Lightning: torchvision's mirrors failing falls back to the hosted copy.
            print(f"Error {error} downloading `torchvision.datasets.MNIST`")
    print("`torchvision.datasets.MNIST` not available. Using our hosted version")
    return _MNIST(*args, **kwargs)


class MNISTDataModule(LightningDataModule):
    """MNIST's training set split into train/validation (`val_split` images, fixed seed 42) and its test set.

    With torchvision the images go through `default_transforms` (`ToTensor`, plus normalisation to [-1, 1]
    when `normalize=True`); without it the hosted dataset's own standardisation applies.
    """

    name = "mnist"

    def __init__(self, data_dir: str = _DATASETS_PATH, val_split: int = 5000, num_workers: int = 16,
                 normalize: bool = False, seed: int = 42, batch_size: int = 32) -> None:
        super().__init__()
        if num_workers and platform.system() == "Windows":
            warn(f"You have requested num_workers={num_workers} on Windows, but currently recommended is 0, so we "
                 "set it for you")
            num_workers = 0
        self.data_dir = data_dir
        self.val_split = val_split
        self.num_workers = num_workers
        self.normalize = normalize
        # Lightning quirk: `seed` is stored but the split always uses seed 42.
        self.seed = seed
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        """Download both MNIST splits into `data_dir`."""
        MNIST(self.data_dir, train=True, download=True)
        MNIST(self.data_dir, train=False, download=True)

    def setup(self, stage: str) -> None:
        dataset = MNIST(self.data_dir, train=True, download=False, **self._transform_kwargs())
        assert isinstance(dataset, Sized)
        lengths = [len(dataset) - self.val_split, self.val_split]
        self.dataset_train, self.dataset_val = random_split(dataset, lengths,
                                                            generator=torch.Generator().manual_seed(42))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        dataset = MNIST(self.data_dir, train=False, download=False, **self._transform_kwargs())
        return self._loader(dataset, shuffle=False)

    @property
    def default_transforms(self) -> Callable | None:
        """torchvision's `ToTensor` (then `Normalize((0.5,), (0.5,))` if `normalize`), or None without it."""
        try:
            from torchvision import transforms
        except ImportError:
            return None
        if self.normalize:
            return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=(0.5,), std=(0.5,))])
        return transforms.ToTensor()

    def _transform_kwargs(self) -> dict[str, Any]:
        # The PIL-image transforms only fit torchvision's dataset; the hosted one yields tensors already.
        if _torchvision_mnist() is None:
            return {}
        transform = self.default_transforms
        return {"transform": transform} if transform else {}

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=True, pin_memory=True)
