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
