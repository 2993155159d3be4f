"""`fulmen.utilities.data`: lengths, batch sizes, worker counts, shared filesystems.

Expected values checked against Lightning 2.6.6's `lightning.pytorch.utilities.data` on the same inputs.
"""

import dataclasses
import os
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import fulmen.utilities as utilities
from fulmen.strategies import SingleDeviceStrategy
from fulmen.utilities.data import (
    BType,
    extract_batch_size,
    has_iterable_dataset,
    has_len_all_ranks,
    is_shared_filesystem,
    sized_len,
    suggested_max_num_workers,
)
from fulmen.utilities.exceptions import MisconfigurationException


@dataclasses.dataclass
class _Batch:
    x: torch.Tensor
    y: int


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(range(3))


class _SizedStream(_Stream):
    def __len__(self):
        return 3


def _caught(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in caught]


@pytest.mark.parametrize(("batch", "size", "warns"), [
    (torch.zeros(3, 2), 3, False),
    (torch.tensor(1.0), 1, False),
    ({"a": torch.zeros(4), "n": "abc"}, 4, True),  # a non-tensor leaf after a size: ambiguous (Lightning)
    ([torch.zeros(2), 5], 2, True),
    (_Batch(torch.zeros(5), 1), 5, True),  # dataclasses are searched
    (["x", torch.zeros(6)], 6, False),  # a non-tensor leaf before the first size is skipped
    ((torch.zeros(2), torch.zeros(3)), 2, True),
])
def test_extract_batch_size(batch, size, warns):
    found, messages = _caught(extract_batch_size, batch)
    assert found == size
    assert bool([m for m in messages if "could not be inferred unambiguously" in m]) is warns


@pytest.mark.parametrize("batch", ["abc", 5, {}])
def test_extract_batch_size_without_tensor(batch):
    with pytest.raises(MisconfigurationException, match=r"batch_size=N"):
        extract_batch_size(batch)


def test_self_log_uses_the_same_batch_size_inference():
    from fulmen.results import result_collection

    assert result_collection.extract_batch_size is extract_batch_size


def test_lengths_and_iterable_datasets():
    strategy = SingleDeviceStrategy("cpu")
    assert (sized_len(DataLoader(range(4))), has_iterable_dataset(DataLoader(range(4)))) == (4, False)
    assert has_len_all_ranks(DataLoader(range(4)), strategy)
    stream = DataLoader(_Stream())
    assert (sized_len(stream), has_iterable_dataset(stream), has_len_all_ranks(stream, strategy)) == (None, True, False)
    ok, messages = _caught(has_len_all_ranks, DataLoader(_SizedStream()), strategy)
    assert ok and any("`IterableDataset` has `__len__` defined" in m for m in messages)
    ok, messages = _caught(has_len_all_ranks, DataLoader([]), strategy)
    assert ok and any("across ranks is zero" in m for m in messages)
    assert sized_len(object()) is None


class _TwoRanks:
    """The strategy calls `has_len_all_ranks` / `is_shared_filesystem` make, as another rank would answer."""

    world_size = 2
    root_device = torch.device("cpu")

    def __init__(self, other_length=0, rank_zero=True, other_path=None, other_found=True):
        self.other_length, self.is_global_zero = other_length, rank_zero
        self.other_path, self.other_found = other_path, other_found

    def reduce(self, value, reduce_op="mean"):
        assert reduce_op == "sum"
        return value + self.other_length

    def broadcast(self, obj, src=0):
        return obj if self.other_path is None else self.other_path

    def reduce_boolean_decision(self, decision, all=True):
        return decision and self.other_found

    def barrier(self, name=None):
        pass


def test_has_len_all_ranks_zero_on_this_rank_only():
    with pytest.raises(RuntimeError, match="within local rank has zero length.*allow_zero_length"):
        has_len_all_ranks(DataLoader([]), _TwoRanks(other_length=3))
    ok, messages = _caught(has_len_all_ranks, DataLoader([]), _TwoRanks(other_length=3), True)
    assert ok and any("uneven batch length" in m for m in messages)


def test_suggested_max_num_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [suggested_max_num_workers(n) for n in (1, 2, 4, 8, 16)] == [7, 3, 1, 1, 1]
    with pytest.raises(ValueError, match=">= 1, got 0"):
        suggested_max_num_workers(0)
    assert utilities.suggested_max_num_workers is suggested_max_num_workers


def test_is_shared_filesystem(tmp_path):
    assert utilities.is_shared_filesystem is is_shared_filesystem
    assert is_shared_filesystem(SingleDeviceStrategy("cpu"), tmp_path)
    assert is_shared_filesystem(_TwoRanks(), "s3://bucket/dir")  # remote storage counts as shared
    assert is_shared_filesystem(_TwoRanks(), tmp_path)  # rank 0 writes the marker and finds it
    assert not is_shared_filesystem(_TwoRanks(other_found=False), tmp_path)
    assert not is_shared_filesystem(_TwoRanks(other_path=tmp_path / "elsewhere"), tmp_path)
    assert not is_shared_filesystem(_TwoRanks(rank_zero=False), tmp_path, 0)  # nobody wrote the marker
    assert list(tmp_path.iterdir()) == []  # the marker is removed
    with pytest.raises(FileNotFoundError, match="does not exist"):
        is_shared_filesystem(_TwoRanks(), tmp_path / "missing")


def test_btype_names_the_batch_forms():
    assert torch.Tensor in BType.__args__ and str in BType.__args__


def _warnings_of_a_fit(tmp_path, monkeypatch, cpus, **fit_flags):
    from helpers.tiny import TinyModule, make_loader, quiet_trainer

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    train = fit_flags.pop("train", None) or make_loader(32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(tmp_path, max_epochs=1, **fit_flags).fit(TinyModule(), train, make_loader(16))
    return [str(warning.message) for warning in caught]


def test_few_workers_are_pointed_out_where_cpus_are_spare(tmp_path, monkeypatch):
    said = _warnings_of_a_fit(tmp_path, monkeypatch, cpus=8)
    assert any(message.startswith("The 'train_dataloader' does not have many workers which may be a bottleneck. "
                                  "Consider increasing the value of the `num_workers` argument` to `num_workers=7`")
               for message in said)  # Lightning's words
    assert any(message.startswith("The 'val_dataloader' does not have many workers") for message in said)
    assert not any("many workers" in message for message in _warnings_of_a_fit(tmp_path, monkeypatch, cpus=2))


def test_a_logging_interval_beyond_the_epoch_and_a_sized_iterable_dataset_are_pointed_out(tmp_path, monkeypatch):
    from fulmen.loggers import CSVLogger

    said = _warnings_of_a_fit(tmp_path, monkeypatch, cpus=1, logger=CSVLogger(tmp_path), log_every_n_steps=5)
    assert ("The number of training batches (4) is smaller than the logging interval Trainer(log_every_n_steps=5). "
            "Set a lower value for log_every_n_steps if you want to see logs for the training epoch.") in said

    class Sized(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.randn(32), torch.tensor(0))] * 8)

        def __len__(self):
            return 8

    loader = torch.utils.data.DataLoader(Sized(), batch_size=4)
    said = _warnings_of_a_fit(tmp_path, monkeypatch, cpus=1, train=loader)
    assert any(message.startswith("Your `IterableDataset` has `__len__` defined.") for message in said)
