"""rank_zero_only / rank_zero_warn / rank_zero_info / rank_zero_debug, and MisconfigurationException's
import paths."""

import json
import logging
import subprocess
import sys
import warnings

import pytest

import fulmen.utilities
import fulmen.utilities.exceptions
from fulmen.utilities import rank_zero_debug, rank_zero_info, rank_zero_only, rank_zero_warn


@pytest.fixture
def fresh_warnings():
    """rank_zero_warn keeps no memory of its own; Python's warning filters decide repeats."""


@pytest.fixture
def rank_one(monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)


def test_rank_zero_only_runs_on_rank_zero():
    calls = []

    @rank_zero_only
    def record(value, *, scale=1):
        calls.append(value * scale)
        return "done"

    assert rank_zero_only.rank == 0
    assert record(2, scale=3) == "done"
    assert calls == [6]


def test_rank_zero_only_skips_other_ranks(rank_one):
    calls = []

    @rank_zero_only
    def record():
        calls.append(1)
        return "done"

    assert record() is None
    assert calls == []


def test_rank_zero_only_reads_the_rank_at_call_time(monkeypatch):
    calls = []

    @rank_zero_only
    def record():
        calls.append(rank_zero_only.rank)

    monkeypatch.setattr(rank_zero_only, "rank", 3)
    record()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    record()
    assert calls == [0]


def test_rank_zero_only_keeps_the_function_name_and_doc():
    @rank_zero_only
    def documented():
        """The docstring."""

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "The docstring."


_RANK_PROBE = """
import importlib, json, os
import fulmen.utilities.rank_zero as module
cases = [{"RANK": "2"}, {"LOCAL_RANK": "3"}, {"SLURM_PROCID": "4"}, {}, {"LOCAL_RANK": "1", "SLURM_PROCID": "0"}]
ranks = []
for case in cases:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        os.environ.pop(key, None)
    os.environ.update(case)
    ranks.append(importlib.reload(module).rank_zero_only.rank)
print(json.dumps(ranks))
"""


@pytest.fixture(scope="module")
def ranks_from_environment():
    """rank_zero_only.rank as set at import under several environments (one subprocess for all)."""
    result = subprocess.run([sys.executable, "-c", _RANK_PROBE], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_rank_zero_only_rank_comes_from_the_environment(ranks_from_environment):
    assert ranks_from_environment[:4] == [2, 3, 4, 0]


def test_local_rank_wins_over_slurm_procid(ranks_from_environment):
    assert ranks_from_environment[4] == 1


def test_rank_zero_warn_shows_each_message_once_per_place_by_default(fresh_warnings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            rank_zero_warn("first message")
        rank_zero_warn("second message")
    assert [str(w.message) for w in caught] == ["first message", "second message"]
    assert all(w.category is UserWarning for w in caught)


def test_rank_zero_warn_uses_the_given_category(fresh_warnings):
    with pytest.warns(DeprecationWarning, match="old api"):
        rank_zero_warn("old api", category=DeprecationWarning)


def test_rank_zero_warn_points_at_the_caller(fresh_warnings):
    def library_function():
        rank_zero_warn("look at the caller")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library_function()
    assert caught[0].filename == __file__


def test_rank_zero_warn_is_silent_on_other_ranks(fresh_warnings, rank_one):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank_zero_warn("hidden on rank one")
    assert caught == []


def test_rank_zero_info_and_debug_log_to_the_fulmen_logger(caplog):
    with caplog.at_level(logging.DEBUG, logger="fulmen"):
        rank_zero_info("an info line")
        rank_zero_debug("a debug line")
    levels = {record.getMessage(): record.levelno for record in caplog.records if record.name == "fulmen"}
    assert levels == {"an info line": logging.INFO, "a debug line": logging.DEBUG}


def test_rank_zero_info_is_silent_on_other_ranks(caplog, rank_one):
    with caplog.at_level(logging.INFO, logger="fulmen"):
        rank_zero_info("hidden info")
    assert "hidden info" not in caplog.text


def test_fulmen_logger_prints_info_by_default():
    logger = logging.getLogger("fulmen")
    assert logger.isEnabledFor(logging.INFO)


def test_misconfiguration_exception_import_paths():
    from fulmen.utilities import MisconfigurationException as from_utilities
    from fulmen.utilities.exceptions import MisconfigurationException as from_exceptions

    assert from_utilities is from_exceptions
    assert issubclass(from_exceptions, Exception)
    with pytest.raises(from_utilities, match="bad flag"):
        raise from_exceptions("bad flag")


def test_rank_zero_helpers_are_public():
    for name in ("rank_zero_only", "rank_zero_warn", "rank_zero_info", "rank_zero_debug"):
        assert name in fulmen.utilities.__all__
    assert fulmen.utilities.exceptions.MisconfigurationException is fulmen.utilities.MisconfigurationException
