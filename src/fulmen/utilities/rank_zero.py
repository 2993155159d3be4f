"""Run or print only on global rank zero; warn once per message."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, TypeVar

__all__ = ["LightningDeprecationWarning", "WarningCache", "rank_prefixed_message", "rank_zero_debug",
           "rank_zero_deprecation", "rank_zero_info", "rank_zero_only", "rank_zero_warn"]

log = logging.getLogger("fulmen")
_T = TypeVar("_T")

# Stack levels below follow Lightning's numbering (4 = the caller of `rank_zero_warn`), which counts one helper
# frame more than fulmen has; each function passes `stacklevel - 1` to `warnings`/`logging` to point at the same place.


def _rank_from_env() -> int:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


def rank_zero_only(fn: Callable[..., _T], default: _T | None = None) -> Callable[..., _T | None]:
    """Decorate `fn` so it runs only where `rank_zero_only.rank == 0`; other ranks get `default`."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> _T | None:
        rank = getattr(rank_zero_only, "rank", None)
        if rank is None:
            raise RuntimeError("`rank_zero_only.rank` is not set: set it to this process's global rank before use.")
        if rank == 0:
            return fn(*args, **kwargs)
        return default

    return wrapped


rank_zero_only.rank = _rank_from_env()  # type: ignore[attr-defined]


class LightningDeprecationWarning(DeprecationWarning):
    """The category `rank_zero_deprecation` warns with."""


@rank_zero_only
def rank_zero_warn(message: str | Warning, stacklevel: int = 4, **kwargs: Any) -> None:
    """Warn on rank zero only (`kwargs` go to `warnings.warn`, e.g. `category`); Python's warning filters show
    each message once per place by default."""
    warnings.warn(message, stacklevel=stacklevel - 1, **kwargs)


@rank_zero_only
def rank_zero_info(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """Log at INFO level on rank zero only (arguments as for `logging.Logger.info`)."""
    log.info(*args, stacklevel=stacklevel - 1, **kwargs)


@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """Log at DEBUG level on rank zero only (arguments as for `logging.Logger.debug`)."""
    log.debug(*args, stacklevel=stacklevel - 1, **kwargs)


def rank_zero_deprecation(message: str | Warning, stacklevel: int = 5, **kwargs: Any) -> None:
    """Warn on rank zero only, as a `LightningDeprecationWarning` unless `category` says otherwise."""
    category = kwargs.pop("category", LightningDeprecationWarning)
    rank_zero_warn(message, stacklevel=stacklevel, category=category, **kwargs)


def rank_prefixed_message(message: str, rank: int | None) -> str:
    """`message` prefixed with `[rank: N] ` when `rank` is given, else unchanged."""
    return message if rank is None else f"[rank: {rank}] {message}"


class WarningCache(set):
    """The messages already shown: each method emits a message the first time only (on rank zero)."""

    def warn(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_warn(message, stacklevel=stacklevel, **kwargs)

    def deprecation(self, message: str, stacklevel: int = 6, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_deprecation(message, stacklevel=stacklevel, **kwargs)

    def info(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_info(message, stacklevel=stacklevel, **kwargs)
