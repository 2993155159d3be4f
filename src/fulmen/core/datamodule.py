"""LightningDataModule: the data hooks of a training system, reusable across modules."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterable, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset, IterableDataset

from fulmen.core.hooks import DataHooks
from fulmen.core.hparams import HyperparametersMixin


class LightningDataModule(HyperparametersMixin, DataHooks):
    """Groups `prepare_data`, `setup`, the `*_dataloader` methods and `teardown` for a data set."""

    name: str | None = None
    # Where checkpoints keep this datamodule's hyperparameters (a subclass may rename them).
    CHECKPOINT_HYPER_PARAMS_KEY = "datamodule_hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "datamodule_hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "datamodule_hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Lightning accepts and drops arguments here, so subclasses may forward theirs to `super().__init__`.
        super().__init__()
        self.trainer: Any = None

    @classmethod
    def from_datasets(
        cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
        predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0, **datamodule_kwargs: Any,
    ) -> LightningDataModule:
        """Build a datamodule whose dataloaders wrap the given datasets (or mappings/lists of them).

        `batch_size` and `num_workers` (when `__init__` accepts them) and `datamodule_kwargs` go to `__init__`.
        """
        accepted = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
        init_kwargs = {key: value for key, value in (("batch_size", batch_size), ("num_workers", num_workers))
                       if key in accepted or takes_any}
        datamodule = cls(**init_kwargs, **datamodule_kwargs)

        def loaders(datasets: Any, shuffle: bool) -> Any:
            def make(dataset: Dataset) -> DataLoader:
                return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=True,
                                  shuffle=shuffle and not isinstance(dataset, IterableDataset))  # as Lightning

            if isinstance(datasets, Mapping):
                return {key: make(ds) for key, ds in datasets.items()}
            if isinstance(datasets, Iterable) and not isinstance(datasets, Dataset):
                return [make(ds) for ds in datasets]
            return make(datasets)

        for name, datasets, shuffle in (("train_dataloader", train_dataset, True),
                                        ("val_dataloader", val_dataset, False),
                                        ("test_dataloader", test_dataset, False),
                                        ("predict_dataloader", predict_dataset, False)):
            if datasets is not None:
                setattr(datamodule, name, functools.partial(loaders, datasets, shuffle))
        return datamodule

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, map_location: Any = None,
                             hparams_file: str | os.PathLike | None = None, weights_only: bool | None = None,
                             **kwargs: Any) -> LightningDataModule:
        """Re-create the datamodule from the hyperparameters and state saved in a checkpoint (`kwargs` win)."""
        from fulmen.core.saving import instantiate_from_checkpoint, load_checkpoint_file, load_hparams_from_yaml

        checkpoint = load_checkpoint_file(checkpoint_path, map_location, weights_only)
        key = cls.CHECKPOINT_HYPER_PARAMS_KEY
        if hparams_file is not None:
            checkpoint[key] = load_hparams_from_yaml(hparams_file)
            checkpoint.pop(cls.CHECKPOINT_HYPER_PARAMS_NAME, None)
        datamodule = instantiate_from_checkpoint(cls, checkpoint, key, kwargs, name_key=cls.CHECKPOINT_HYPER_PARAMS_NAME,
                                                 type_key=cls.CHECKPOINT_HYPER_PARAMS_TYPE)
        if cls.__qualname__ in checkpoint:
            datamodule.load_state_dict(checkpoint[cls.__qualname__])
        return datamodule

    def state_dict(self) -> dict[str, Any]:
        """Return state to save in checkpoints."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by `state_dict`."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when the run is interrupted by an exception."""
