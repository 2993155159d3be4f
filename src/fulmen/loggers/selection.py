"""Turn `Trainer(logger=...)` into the run's list of loggers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fulmen.loggers.logger import Logger


def build_loggers(logger: Any, default_root_dir: str) -> list[Logger]:
    """`None`/`True` gives the default logger; `False` none; a logger or an iterable of loggers as given."""
    if logger is False:
        return []
    if logger is None or logger is True:
        from fulmen.loggers.csv_logger import CSVLogger

        return [CSVLogger(save_dir=default_root_dir)]
    if isinstance(logger, Logger):
        return [logger]
    if isinstance(logger, Iterable):
        loggers = list(logger)
        for item in loggers:
            if not isinstance(item, Logger):
                raise TypeError(f"`logger` holds {type(item).__name__}, which is not a `fulmen.loggers.Logger`.")
        return loggers
    raise TypeError(f"`logger` must be a Logger, a list of loggers, True or False; received {type(logger).__name__}.")


def log_hyperparameters(loggers: list[Logger], module: Any, datamodule: Any) -> None:
    """Send the module's and datamodule's saved hyperparameters to every logger."""
    if not loggers:
        return
    params: dict[str, Any] = {}
    for owner in (module, datamodule):
        if owner is not None and getattr(owner, "_log_hyperparams", False):
            params.update(owner.hparams_initial)
    for logger in loggers:
        logger.log_hyperparams(params)
        logger.save()
