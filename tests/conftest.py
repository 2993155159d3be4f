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
    for key in _LAUNCH_KEYS:
        if key not in os.environ:
            # Recorded as absent, so a launcher that writes it into os.environ during the test (the "ddp" launcher
            # sets LOCAL_RANK, NODE_RANK, WORLD_SIZE in its own process) cannot turn later tests distributed.
            monkeypatch.setenv(key, "")
            monkeypatch.delenv(key)
    yield


_LAUNCH_KEYS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def spawn_env(monkeypatch):
    """A clean single-machine launch environment for a 2-process gloo job on a free port (monkeypatch restores it)."""
    from helpers.ddp_modules import free_port

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        # Set, then delete: monkeypatch then records the key's absence too, so what the launcher writes into
        # os.environ during the test (NODE_RANK, WORLD_SIZE, LOCAL_RANK) is removed again afterwards.
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def spawn_time_limit():
    """Fail a ddp_spawn run still going after 60 s, and end the ranks it spawned."""
    import multiprocessing
    import signal

    def expire(signum, frame):
        raise TimeoutError("the ddp_spawn run did not finish within 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for child in multiprocessing.active_children():
            child.kill()
            child.join()
