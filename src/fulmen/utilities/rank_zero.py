"""Run or print only on global rank zero; warn once per message."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, TypeVar

log = logging.getLogger("fulmen")
_T = TypeVar("_T")


def _rank_from_env() -> int:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


def rank_zero_only(fn: Callable[..., _T]) -> Callable[..., _T | None]:
    """Decorate `fn` so it runs only where `rank_zero_only.rank == 0`."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> _T | None:
        if rank_zero_only.rank == 0:
            return fn(*args, **kwargs)
        return None

    return wrapped


rank_zero_only.rank = _rank_from_env()  # type: ignore[attr-defined]

@rank_zero_only
def rank_zero_warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 3) -> None:
    """Warn on rank zero only; Python's warning filters show each message once per place by default."""
    warnings.warn(message, category, stacklevel=stacklevel)


@rank_zero_only
def rank_zero_info(message: str) -> None:
    """Log `message` at INFO level on rank zero only."""
    log.info(message)


@rank_zero_only
def rank_zero_debug(message: str) -> None:
    """Log `message` at DEBUG level on rank zero only."""
    log.debug(message)
