"""LightningDataModule: the data hooks of a training system, reusable across modules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset, IterableDataset

from fulmen.core.hooks import CheckpointHooks, DataHooks
from fulmen.core.hparams import HyperparametersMixin


class LightningDataModule(HyperparametersMixin, DataHooks, CheckpointHooks):
    """Groups `prepare_data`, `setup`, the `*_dataloader` methods and `teardown` for a data set."""

    name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Any = None

    @classmethod
    def from_datasets(
        cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
        predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0, **dataloader_kwargs: Any,
    ) -> LightningDataModule:
        """Build a datamodule whose dataloaders wrap the given datasets (or mappings/lists of them)."""

        def loaders(datasets: Any, shuffle: bool) -> Any:
            def make(dataset: Dataset) -> DataLoader:
                return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                  shuffle=shuffle and not isinstance(dataset, IterableDataset), **dataloader_kwargs)

            if isinstance(datasets, Mapping):
                return {key: make(ds) for key, ds in datasets.items()}
            if isinstance(datasets, Iterable) and not isinstance(datasets, Dataset):
                return [make(ds) for ds in datasets]
            return make(datasets)

        datamodule = cls()
        if train_dataset is not None:
            datamodule.train_dataloader = lambda: loaders(train_dataset, shuffle=True)  # type: ignore[method-assign]
        if val_dataset is not None:
            datamodule.val_dataloader = lambda: loaders(val_dataset, shuffle=False)  # type: ignore[method-assign]
        if test_dataset is not None:
            datamodule.test_dataloader = lambda: loaders(test_dataset, shuffle=False)  # type: ignore[method-assign]
        if predict_dataset is not None:
            datamodule.predict_dataloader = lambda: loaders(predict_dataset, shuffle=False)  # type: ignore[method-assign]
        return datamodule

    def state_dict(self) -> dict[str, Any]:
        """Return state to save in checkpoints."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by `state_dict`."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when the run is interrupted by an exception."""
