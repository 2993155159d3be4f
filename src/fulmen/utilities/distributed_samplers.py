"""Samplers that split a dataset (or another sampler's output) between the processes of a DDP job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class UnrepeatedDistributedSampler(DistributedSampler):
    """Split without padding (5 samples on 2 ranks: 3 + 2), so predictions are not duplicated."""

    def __init__(self, dataset: Any, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.num_samples = len(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(len(self.dataset), generator=generator).tolist()  # type: ignore[arg-type]
        else:
            indices = list(range(len(self.dataset)))  # type: ignore[arg-type]
        return iter(indices[self.rank:self.total_size:self.num_replicas])


class _SamplerPositions(Dataset):
    """The indices a sampler yields, as a dataset, so a DistributedSampler can split them."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self._indices: list[Any] | None = None

    def reset(self) -> None:
        self._indices = list(self._sampler)

    def __getitem__(self, position: int) -> Any:
        if self._indices is None:
            self.reset()
        return self._indices[position]  # type: ignore[index]

    def __len__(self) -> int:
        return len(self._sampler)  # type: ignore[arg-type]


class DistributedSamplerWrapper(DistributedSampler):
    """Split the output of a user's sampler between ranks; `set_epoch` reaches the wrapped sampler too."""

    def __init__(self, sampler: Sampler, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(_SamplerPositions(sampler), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        inner = getattr(self.sampler, "set_epoch", None)
        if callable(inner):
            inner(epoch)

    def __iter__(self) -> Iterator[Any]:
        positions: _SamplerPositions = self.dataset  # type: ignore[assignment]
        positions.reset()
        return (positions[index] for index in super().__iter__())
