"""The samplers that split data between DDP ranks, and which one each stage's loader gets (notes 26-27).

Single process: every rank's sampler is built side by side with `num_replicas=2, rank=r`.
"""

import pytest
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler

import fulmen as L
from fulmen.trainer.data_source import _distributed_sampler
from fulmen.utilities.distributed_samplers import DistributedSamplerWrapper, UnrepeatedDistributedSampler

RANKS = (0, 1)


class EvenFirstSampler(Sampler):
    """A user's sampler: even indices, then odd ones; remembers `set_epoch` calls."""

    def __init__(self, num_samples):
        self.num_samples = num_samples
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter([*range(0, self.num_samples, 2), *range(1, self.num_samples, 2)])

    def __len__(self):
        return self.num_samples


def _shards(make):
    return [list(make(rank)) for rank in RANKS]


# -- UnrepeatedDistributedSampler ------------------------------------------------------------------------------


def test_unrepeated_sampler_splits_five_into_three_and_two():
    samplers = [UnrepeatedDistributedSampler(range(5), num_replicas=2, rank=rank) for rank in RANKS]
    assert [list(sampler) for sampler in samplers] == [[0, 2, 4], [1, 3]]
    assert [len(sampler) for sampler in samplers] == [3, 2]


@pytest.mark.parametrize("num_samples", [1, 4, 7])
def test_unrepeated_sampler_with_shuffle_covers_each_sample_once(num_samples):
    shards = _shards(lambda rank: UnrepeatedDistributedSampler(range(num_samples), 2, rank, shuffle=True, seed=3))
    assert sorted(shards[0] + shards[1]) == list(range(num_samples))
    assert [len(shard) for shard in shards] == [(num_samples + 1) // 2, num_samples // 2]


def test_unrepeated_sampler_reshuffles_with_set_epoch():
    samplers = [UnrepeatedDistributedSampler(range(32), 2, rank, shuffle=True) for rank in RANKS]
    first = [list(sampler) for sampler in samplers]
    for sampler in samplers:
        sampler.set_epoch(1)
    second = [list(sampler) for sampler in samplers]
    assert second != first
    assert sorted(second[0] + second[1]) == list(range(32))


# -- DistributedSamplerWrapper -------------------------------------------------------------------------------


def test_wrapper_splits_the_positions_of_the_users_sampler():
    order = list(EvenFirstSampler(8))
    shards = _shards(lambda rank: DistributedSamplerWrapper(EvenFirstSampler(8), 2, rank, shuffle=False))
    assert shards == [order[0::2], order[1::2]]


def test_wrapper_shuffles_positions_like_a_distributed_sampler_and_passes_set_epoch_on():
    inner = [EvenFirstSampler(10) for _ in RANKS]
    wrappers = [DistributedSamplerWrapper(inner[rank], 2, rank, shuffle=True, seed=5) for rank in RANKS]
    order = list(EvenFirstSampler(10))
    for epoch in range(2):
        for wrapper in wrappers:
            wrapper.set_epoch(epoch)
        positions = [DistributedSampler(range(10), 2, rank, shuffle=True, seed=5) for rank in RANKS]
        for sampler in positions:
            sampler.set_epoch(epoch)
        expected = [[order[p] for p in sampler] for sampler in positions]
        shards = [list(wrapper) for wrapper in wrappers]
        assert shards == expected
        assert sorted(shards[0] + shards[1]) == list(range(10))
    assert [sampler.epochs for sampler in inner] == [[0, 1], [0, 1]]


def test_wrapper_pads_an_uneven_split():
    shards = _shards(lambda rank: DistributedSamplerWrapper(EvenFirstSampler(5), 2, rank, shuffle=False))
    assert shards == [[0, 4, 3], [2, 1, 0]]


# -- which sampler each stage gets -----------------------------------------------------------------------------


def _loader(num_samples, **kwargs):
    return DataLoader(list(range(num_samples)), batch_size=2, **kwargs)


@pytest.mark.parametrize("shuffle", [False, True])
def test_training_always_gets_a_shuffling_sampler_seeded_with_zero(shuffle):
    samplers = [_distributed_sampler("train", _loader(16, shuffle=shuffle), {"num_replicas": 2, "rank": rank})
                for rank in RANKS]
    for rank, sampler in enumerate(samplers):
        assert isinstance(sampler, DistributedSampler)
        assert sampler.shuffle and sampler.seed == 0
        assert list(sampler) == list(DistributedSampler(range(16), 2, rank, shuffle=True, seed=0))


def test_training_sampler_seed_comes_from_seed_everything(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # so the value seed_everything writes is removed afterwards
    L.seed_everything(42)
    sampler = _distributed_sampler("train", _loader(16), {"num_replicas": 2, "rank": 0})
    assert sampler.seed == 42


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_validation_and_test_pad_without_shuffling(stage):
    shards = _shards(lambda rank: _distributed_sampler(stage, _loader(7), {"num_replicas": 2, "rank": rank}))
    assert shards == [[0, 2, 4, 6], [1, 3, 5, 0]]


def test_predict_gets_an_unrepeated_sampler():
    samplers = [_distributed_sampler("predict", _loader(5), {"num_replicas": 2, "rank": rank}) for rank in RANKS]
    assert all(isinstance(sampler, UnrepeatedDistributedSampler) for sampler in samplers)
    assert [list(sampler) for sampler in samplers] == [[0, 2, 4], [1, 3]]


def test_custom_sampler_is_wrapped_for_training():
    sampler = _distributed_sampler("train", _loader(8, sampler=EvenFirstSampler(8)), {"num_replicas": 2, "rank": 0})
    assert isinstance(sampler, DistributedSamplerWrapper) and sampler.shuffle
    assert isinstance(sampler.sampler, EvenFirstSampler)


@pytest.mark.parametrize("sampler_type", [SequentialSampler, RandomSampler])
def test_plain_samplers_are_replaced_not_wrapped(sampler_type):
    loader = _loader(8, sampler=sampler_type(range(8)))
    sampler = _distributed_sampler("train", loader, {"num_replicas": 2, "rank": 1})
    assert type(sampler) is DistributedSampler
