"""Shared fixtures: tiny models and data live in tests/helpers; each test gets fresh seeds."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _fresh_seed_and_env(monkeypatch):
    torch.manual_seed(0)
    for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(key, raising=False)
    yield


@pytest.fixture
def spawn_env(monkeypatch):
    """A clean single-machine launch environment for a 2-process gloo job on a free port (monkeypatch restores it)."""
    from helpers.ddp_modules import free_port

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
