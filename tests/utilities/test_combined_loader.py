"""CombinedLoader: the batches, indices and lengths of each mode.

Every expected sequence here was produced by Lightning 2.6.6's `CombinedLoader` on the same input.
"""

import pickle
from collections import OrderedDict, namedtuple

import pytest
import torch
from torch.utils.data import DataLoader

from fulmen.utilities import CombinedLoader
from fulmen.utilities.combined_loader import CombinedLoader as DirectCombinedLoader


def _plain(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _loaders():
    return {"a": DataLoader(range(6), batch_size=4), "b": DataLoader(range(15), batch_size=5)}


def test_exported_from_utilities():
    assert CombinedLoader is DirectCombinedLoader


MODES = {
    "min_size": (2, [({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, 0, 0),
                     ({"a": [4, 5], "b": [5, 6, 7, 8, 9]}, 1, 0)]),
    "max_size_cycle": (3, [({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, 0, 0),
                           ({"a": [4, 5], "b": [5, 6, 7, 8, 9]}, 1, 0),
                           ({"a": [0, 1, 2, 3], "b": [10, 11, 12, 13, 14]}, 2, 0)]),
    "max_size": (3, [({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, 0, 0),
                     ({"a": [4, 5], "b": [5, 6, 7, 8, 9]}, 1, 0),
                     ({"a": None, "b": [10, 11, 12, 13, 14]}, 2, 0)]),
    "sequential": (5, [([0, 1, 2, 3], 0, 0), ([4, 5], 1, 0), ([0, 1, 2, 3, 4], 0, 1),
                       ([5, 6, 7, 8, 9], 1, 1), ([10, 11, 12, 13, 14], 2, 1)]),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_modes_yield_batch_batch_idx_dataloader_idx(mode):
    length, expected = MODES[mode]
    combined = CombinedLoader(_loaders(), mode)
    assert _plain(next(iter(combined))) == expected[0]
    iter(combined)
    assert len(combined) == length
    assert [_plain(out) for out in combined] == expected
    # A second pass starts over.
    assert [_plain(out) for out in combined] == expected


NESTED = {
    "min_size": [([0, [0, 0]], 0, 0), ([1, [1, 1]], 1, 0)],
    "max_size_cycle": [([0, [0, 0]], 0, 0), ([1, [1, 1]], 1, 0), ([2, [2, 0]], 2, 0), ([0, [3, 1]], 3, 0),
                       ([1, [4, 0]], 4, 0)],
    "max_size": [([0, [0, 0]], 0, 0), ([1, [1, 1]], 1, 0), ([2, [2, None]], 2, 0), ([None, [3, None]], 3, 0),
                 ([None, [4, None]], 4, 0)],
    "sequential": [(0, 0, 0), (1, 1, 0), (2, 2, 0), (0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1), (4, 4, 1),
                   (0, 0, 2), (1, 1, 2)],
}


@pytest.mark.parametrize("mode", list(NESTED))
def test_nested_iterables_keep_their_shape(mode):
    combined = CombinedLoader([range(3), [range(5), range(2)]], mode)
    assert list(combined) == NESTED[mode]
    assert combined.flattened == [range(3), range(5), range(2)]


LIMITED = {  # lengths [3, 7], limits [2, 4]
    "min_size": (2, [([0, 0], 0, 0), ([1, 1], 1, 0), ([2, 2], 2, 0)]),  # limits shorten len only (Lightning)
    "max_size_cycle": (4, [([0, 0], 0, 0), ([1, 1], 1, 0), ([2, 2], 2, 0), ([0, 3], 3, 0), ([1, 4], 4, 0),
                           ([2, 5], 5, 0), ([0, 6], 6, 0)]),
    "max_size": (4, [([0, 0], 0, 0), ([1, 1], 1, 0), ([2, 2], 2, 0), ([None, 3], 3, 0), ([None, 4], 4, 0),
                     ([None, 5], 5, 0), ([None, 6], 6, 0)]),
    "sequential": (6, [(0, 0, 0), (1, 1, 0), (0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]),
}


@pytest.mark.parametrize("mode", list(LIMITED))
def test_limits(mode):
    length, expected = LIMITED[mode]
    combined = CombinedLoader([range(3), range(7)], mode)
    combined.limits = [2, 4]
    iter(combined)
    assert len(combined) == length
    assert list(combined) == expected


def test_limits_setter():
    combined = CombinedLoader([range(2), range(3)], "max_size_cycle")
    assert combined.limits is None
    combined.limits = 1
    assert combined.limits == [1, 1]
    with pytest.raises(ValueError, match=r"number of limits \(1\) and number of iterables \(2\)"):
        combined.limits = [1]


def test_default_mode_is_min_size():
    assert list(CombinedLoader([range(1), range(3)])) == [([0, 0], 0, 0)]


def test_containers_of_primitives_are_one_iterable():
    combined = CombinedLoader([[1, 2, 3], range(2)], "max_size")
    assert combined.flattened == [[1, 2, 3], range(2)]
    assert list(combined) == [([1, 0], 0, 0), ([2, 1], 1, 0), ([3, None], 2, 0)]


def test_single_iterable_tuple_and_empty():
    single = CombinedLoader(range(4), "max_size_cycle")
    assert list(single) == [(0, 0, 0), (1, 1, 0), (2, 2, 0), (3, 3, 0)]
    assert single.iterables == range(4) and single.flattened == [range(4)]
    assert list(CombinedLoader((range(2), range(3)), "max_size_cycle")) == [((0, 0), 0, 0), ((1, 1), 1, 0),
                                                                             ((0, 2), 2, 0)]
    empty = CombinedLoader([], "max_size_cycle")
    assert empty.flattened == [[]] and list(empty) == []


def test_mapping_and_namedtuple_types_are_kept():
    pair = namedtuple("pair", ["x", "y"])
    batch, _, _ = next(iter(CombinedLoader(pair(range(2), range(2)), "min_size")))
    assert batch == pair(0, 0)
    batch, _, _ = next(iter(CombinedLoader(OrderedDict(b=range(2), a=range(2)), "min_size")))
    assert isinstance(batch, OrderedDict) and list(batch) == ["b", "a"]


def test_sampler_and_batch_sampler_follow_the_shape():
    combined = CombinedLoader({"a": DataLoader(range(6), batch_size=4), "b": [DataLoader(range(3)), range(2)]})
    assert combined.sampler["a"] is combined.iterables["a"].sampler
    assert combined.batch_sampler["b"][0] is combined.iterables["b"][0].batch_sampler
    assert combined.sampler["b"][1] is None


def test_flattened_setter_replaces_iterables():
    combined = CombinedLoader({"a": range(2), "b": [range(3)]}, "max_size_cycle")
    combined.flattened = [range(10, 12), range(20, 21)]
    assert combined.iterables == {"a": range(10, 12), "b": [range(20, 21)]}
    assert list(combined) == [({"a": 10, "b": [20]}, 0, 0), ({"a": 11, "b": [20]}, 1, 0)]
    with pytest.raises(ValueError, match=r"flattened length \(1\) and existing length \(2\)"):
        combined.flattened = [range(1)]


def test_len_needs_iter_and_a_sized_iterable():
    combined = CombinedLoader([range(2)], "max_size_cycle")
    with pytest.raises(RuntimeError, match=r"call `iter\(combined_loader\)` first"):
        len(combined)
    unsized = iter(CombinedLoader([range(2), iter([1, 2, 3])], "max_size_cycle"))
    with pytest.raises(TypeError, match="no length"):
        len(unsized)


def test_unsupported_mode():
    with pytest.raises(ValueError, match=r"Unsupported mode 'foo'.*'min_size', 'max_size_cycle'"):
        CombinedLoader([range(2)], "foo")


def test_iter_returns_self_next_and_reset():
    combined = CombinedLoader([range(2), range(3)], "sequential")
    assert iter(combined) is combined
    assert [next(combined), next(combined), next(combined)] == [(0, 0, 0), (1, 1, 0), (0, 0, 1)]
    combined.reset()
    with pytest.raises(RuntimeError, match="before `next"):
        next(combined)
    with pytest.raises(RuntimeError):
        len(combined)


def test_reset_shuts_down_workers():
    loader = DataLoader(range(8), batch_size=2, num_workers=1, persistent_workers=True)
    combined = CombinedLoader([loader, range(3)], "max_size_cycle")
    it = iter(combined)
    next(it)
    workers = loader._iterator
    assert workers is not None and workers._workers_status[0]
    combined.reset()
    assert not any(workers._workers_status)


def test_picklable_before_iteration():
    combined = pickle.loads(pickle.dumps(CombinedLoader({"a": [1, 2], "b": range(2)}, "max_size")))
    assert list(combined) == [({"a": 1, "b": 0}, 0, 0), ({"a": 2, "b": 1}, 1, 0)]


def test_picklable_while_iterating():
    combined = CombinedLoader([DataLoader(range(4)), DataLoader(range(2))], "max_size_cycle")
    next(iter(combined))
    restored = pickle.loads(pickle.dumps(combined))
    assert len(restored) == 4
    assert [_plain(batch) for batch, _, _ in iter(restored)] == [[[0], [0]], [[1], [1]], [[2], [0]], [[3], [1]]]
