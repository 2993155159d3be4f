"""Lightning's rank-zero helpers beyond the basics: `default`, stack levels, deprecations, WarningCache.

Where each message points (function/line) was compared with Lightning 2.6.6 running the same calls.
"""

import logging
import sys
import warnings

import pytest

import fulmen.utilities
from fulmen.utilities.rank_zero import (
    LightningDeprecationWarning,
    WarningCache,
    rank_prefixed_message,
    rank_zero_debug,
    rank_zero_deprecation,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
)


@pytest.fixture
def rank_one(monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)


def caller_line():
    return sys._getframe(1).f_lineno


def test_rank_zero_only_returns_the_default_on_other_ranks(rank_one):
    decorated = rank_zero_only(lambda: "ran", default="skipped")
    assert decorated() == "skipped"
    assert rank_zero_only(lambda: "ran")() is None


def test_rank_zero_only_needs_a_rank(monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", None)
    with pytest.raises(RuntimeError, match="rank_zero_only.rank"):
        rank_zero_only(lambda: 1)()


def test_rank_prefixed_message():
    assert rank_prefixed_message("saving", 3) == "[rank: 3] saving"
    assert rank_prefixed_message("saving", 0) == "[rank: 0] saving"
    assert rank_prefixed_message("saving", None) == "saving"


def test_warnings_point_at_the_caller_and_stacklevel_counts_as_in_lightning():
    def library_call():
        rank_zero_warn("from library", stacklevel=5)  # one frame further up: the caller of library_call

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = caller_line(); rank_zero_warn("plain"); rank_zero_deprecation("old")  # noqa: E702
        library_line = caller_line(); library_call()  # noqa: E702
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line), (__file__, line), (__file__, library_line)]
    assert [w.category for w in caught] == [UserWarning, LightningDeprecationWarning, UserWarning]
    assert issubclass(LightningDeprecationWarning, DeprecationWarning)


def test_rank_zero_deprecation_takes_another_category():
    with pytest.warns(FutureWarning, match="soon"):
        rank_zero_deprecation("soon", category=FutureWarning)


def test_rank_zero_deprecation_is_silent_on_other_ranks(rank_one):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank_zero_deprecation("hidden")
    assert caught == []


def test_info_and_debug_take_logging_arguments_and_point_at_the_caller(caplog):
    def helper():
        rank_zero_info("from helper", stacklevel=5)

    with caplog.at_level(logging.DEBUG, logger="fulmen"):
        rank_zero_info("epoch %d of %d", 1, 3)
        rank_zero_debug("debug %s", "line")
        helper()
    records = [(r.getMessage(), r.levelno, r.funcName) for r in caplog.records if r.name == "fulmen"]
    here = sys._getframe().f_code.co_name
    assert records == [("epoch 1 of 3", logging.INFO, here), ("debug line", logging.DEBUG, here),
                       ("from helper", logging.INFO, here)]


def test_warning_cache_emits_each_message_once(caplog):
    cache = WarningCache()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="fulmen"):
        warnings.simplefilter("always")
        for _ in range(3):
            line = caller_line(); cache.warn("careful")  # noqa: E702
            cache.deprecation("going away")
            cache.info("note")
        cache.warn("another", category=RuntimeWarning)
    assert [(str(w.message), w.category) for w in caught] == [
        ("careful", UserWarning), ("going away", LightningDeprecationWarning), ("another", RuntimeWarning)]
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
    assert [r.getMessage() for r in caplog.records if r.name == "fulmen"] == ["note"]
    assert cache == {"careful", "going away", "note", "another"}
    cache.clear()
    with pytest.warns(UserWarning, match="careful"):
        cache.warn("careful")


def test_rank_zero_deprecation_is_exported_from_utilities():
    assert fulmen.utilities.rank_zero_deprecation is rank_zero_deprecation
    assert "rank_zero_deprecation" in fulmen.utilities.__all__
