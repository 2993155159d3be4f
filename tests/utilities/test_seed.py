"""seed_everything: the returned seed, the environment it sets, reproducible torch/random/numpy streams,
and reproducible-but-distinct dataloader worker seeds with `workers=True`."""

import logging
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

import fulmen as L
from fulmen.utilities import seed_everything
from helpers.module_fixtures import quiet_trainer


def _draw():
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def test_seed_everything_returns_the_seed_and_sets_the_environment():
    assert seed_everything(1234) == 1234
    assert os.environ["PL_GLOBAL_SEED"] == "1234"
    assert os.environ["PL_SEED_WORKERS"] == "0"
    seed_everything(5, workers=True)
    assert os.environ["PL_SEED_WORKERS"] == "1"


def test_seed_everything_is_exported_at_the_top_level():
    assert L.seed_everything is seed_everything


def test_seed_everything_makes_torch_random_and_numpy_reproducible():
    seed_everything(42)
    first = _draw()
    seed_everything(42)
    assert _draw() == first
    seed_everything(43)
    assert _draw() != first


def test_seed_everything_matches_a_direct_manual_seed():
    seed_everything(7)
    values = torch.rand(4)
    torch.manual_seed(7)
    assert torch.equal(values, torch.rand(4))
    seed_everything(7)
    py_value = random.random()
    random.seed(7)
    assert random.random() == py_value


def test_seed_everything_without_seed_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "77")
    assert seed_everything() == 77


@pytest.fixture
def fresh_warnings():
    """rank_zero_warn keeps no memory of its own; nothing to reset."""


def test_seed_everything_without_seed_or_environment_uses_zero_and_warns(fresh_warnings):
    with pytest.warns(UserWarning, match="0"):
        assert seed_everything() == 0
    assert os.environ["PL_GLOBAL_SEED"] == "0"


def test_seed_everything_out_of_bounds_falls_back_to_zero(fresh_warnings):
    with pytest.warns(UserWarning):
        assert seed_everything(2**32) == 0


def test_seed_everything_accepts_a_numeric_string():
    assert seed_everything("12") == 12


def test_seed_everything_reports_the_seed(caplog):
    with caplog.at_level(logging.INFO, logger="fulmen"):
        seed_everything(31)
        seed_everything(32, verbose=False)
    messages = [record.getMessage() for record in caplog.records]
    assert "Seed set to 31" in messages
    assert not any("32" in message for message in messages)


# -- dataloader workers -------------------------------------------------------------------------------


class _WorkerRandomness(Dataset):
    """Each item: the worker id and one number from each of torch, random and numpy in that worker."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        worker = get_worker_info()
        return torch.tensor(
            [float(worker.id), torch.rand(1).item(), random.random(), float(np.random.rand())], dtype=torch.float64
        )


class _Echo(L.LightningModule):
    def predict_step(self, batch, batch_idx):
        return batch


def _draw_from_workers(tmp_path, workers):
    seed_everything(123, workers=workers, verbose=False)
    loader = DataLoader(_WorkerRandomness(), batch_size=1, num_workers=2)
    return torch.cat(quiet_trainer(tmp_path).predict(_Echo(), loader))


def test_worker_seeds_are_reproducible_and_distinct(tmp_path):
    first = _draw_from_workers(tmp_path, workers=True)
    second = _draw_from_workers(tmp_path, workers=True)
    assert torch.equal(first, second)
    worker_ids = first[:, 0].tolist()
    assert worker_ids == [0.0, 1.0, 0.0, 1.0]
    # the first item of worker 0 and of worker 1 differ in every generator
    assert (first[0, 1:] != first[1, 1:]).all()


def test_workers_true_changes_the_worker_streams(tmp_path):
    seeded = _draw_from_workers(tmp_path, workers=True)
    unseeded = _draw_from_workers(tmp_path, workers=False)
    assert not torch.equal(seeded[:, 1:], unseeded[:, 1:])
