"""`isolate_rng(include_cuda=...)` at Lightning's path `fulmen.utilities.seed`."""

import random

import numpy
import pytest
import torch

from fulmen.utilities.seed import isolate_rng


def draws():
    return torch.rand(2).tolist(), random.random(), numpy.random.rand()


@pytest.mark.parametrize("include_cuda", [True, False])
def test_isolate_rng_puts_back_torch_python_and_numpy_streams(include_cuda):
    torch.manual_seed(1), random.seed(1), numpy.random.seed(1)
    with isolate_rng(include_cuda=include_cuda):
        inside = [draws() for _ in range(3)]
    after = draws()
    assert after == inside[0]


def test_isolate_rng_include_cuda_false_never_touches_cuda(monkeypatch):
    # With include_cuda=False (a forked worker where CUDA must not be used), CUDA's RNG is neither read nor set.
    def forbidden(*args, **kwargs):
        raise AssertionError("CUDA RNG touched")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", forbidden)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", forbidden)
    with isolate_rng(include_cuda=False):
        torch.rand(1)
    with pytest.raises(AssertionError, match="CUDA RNG touched"):
        with isolate_rng():
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_isolate_rng_restores_cuda_streams_when_included():
    torch.cuda.init()
    torch.cuda.manual_seed(3)
    with isolate_rng():
        inside = torch.rand(3, device="cuda").tolist()
    assert torch.rand(3, device="cuda").tolist() == inside
    with isolate_rng(include_cuda=False):
        torch.rand(3, device="cuda")
    assert torch.rand(3, device="cuda").tolist() != inside
