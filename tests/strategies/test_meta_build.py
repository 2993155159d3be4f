"""When layers made in `configure_model` may stay on the meta device under FSDP (`strategies/meta_build.py`), and
that a build which may not is rewound exactly. The 2-process runs are in test_fsdp.py."""

import random
import re

import pytest
import torch
from torch import nn

from fulmen.strategies.meta_build import MetaBuild


def _meta():
    return torch.device("meta")


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = None
        self.blocks = nn.ModuleList()


def test_torch_layers_with_their_own_initialisation_stay_on_meta():
    holder = Holder()

    def build():
        holder.body = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Embedding(3, 4))
        holder.blocks.append(nn.Conv1d(2, 2, 3))

    assert MetaBuild(holder).attempt(build, _meta) is None
    assert all(p.is_meta for p in holder.parameters())


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))


def _user_init(holder):
    holder.body = nn.Linear(4, 4)
    nn.init.zeros_(holder.body.bias)


def _data_write(holder):
    holder.body = nn.Linear(4, 4)
    holder.body.weight.data[0] = 1.0


def _user_layer(holder):
    holder.body = nn.Sequential(nn.Linear(4, 4), Scale())


def _tied(holder):
    holder.body = nn.Sequential(nn.Embedding(4, 4), nn.Linear(4, 4, bias=False))
    holder.body[1].weight = holder.body[0].weight


def _reads_a_value(holder):
    holder.body = nn.Linear(4, 4)
    if holder.body.weight.sum() > 0:
        pass


def _explicit_device(holder):
    holder.body = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4, device="cpu"))


@pytest.mark.parametrize(("build", "reason"), [
    (_user_init, r"sets values itself \(zero_ at .*test_meta_build.py"),
    (_data_write, r"sets values itself \(__setitem__ at .*test_meta_build.py"),
    (_user_layer, "`body.1` \\(Scale\\) owns parameters but is not one of torch's layers"),
    (_tied, "`body.0` and `body.1` share a tensor"),
    (_reads_a_value, "failed on the meta device"),
    (_explicit_device, "`body.1` holds tensors that are not on the meta device"),
])
def test_builds_that_meta_would_change_are_refused_with_the_reason(build, reason):
    holder = Holder()
    verdict = MetaBuild(holder).attempt(lambda: build(holder), _meta)
    assert verdict is not None and re.search(reason, verdict), verdict


def test_rewind_puts_the_module_and_the_random_generators_back():
    holder = Holder()
    torch.manual_seed(3)
    random.seed(3)
    expected_torch, expected_python = torch.rand(2), random.random()
    torch.manual_seed(3)
    random.seed(3)
    attempt = MetaBuild(holder)

    def build():
        torch.rand(5)
        random.random()
        _user_init(holder)
        holder.blocks.append(nn.Linear(2, 2))
        holder.extra = 7

    assert attempt.attempt(build, _meta) is not None
    attempt.rewind()
    assert holder.body is None and len(holder.blocks) == 0 and not hasattr(holder, "extra")
    assert list(holder.parameters()) == []
    assert torch.equal(torch.rand(2), expected_torch) and random.random() == expected_python


def test_a_module_with_tensors_from_init_is_not_eligible():
    assert MetaBuild.eligible(Holder())
    holder = Holder()
    holder.blocks.append(nn.Linear(2, 2))
    assert not MetaBuild.eligible(holder)
