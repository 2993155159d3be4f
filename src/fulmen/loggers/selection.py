"""Turn `Trainer(logger=...)` into the run's list of loggers."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from fulmen.loggers.logger import Logger


def build_loggers(logger: Any, default_root_dir: str, fast_dev_run: bool = False) -> list[Logger]:
    """`None`/`True` gives the default logger; `False` none; a logger or an iterable of loggers as given. Under
    `fast_dev_run` a `DummyLogger` stands in for any of them (as Lightning): `trainer.logger.experiment...` calls
    still work and nothing is written."""
    loggers = _configured_loggers(logger, default_root_dir) if logger is not False else []
    if fast_dev_run and loggers:
        from fulmen.loggers.logger import DummyLogger

        return [DummyLogger()]
    return loggers


def _configured_loggers(logger: Any, default_root_dir: str) -> list[Logger]:
    if logger is None or logger is True:
        # Lightning's default: TensorBoard when the package is installed, else CSV files.
        if importlib.util.find_spec("tensorboard") is not None:
            from fulmen.loggers.tensorboard import TensorBoardLogger

            return [TensorBoardLogger(save_dir=default_root_dir)]
        from fulmen.loggers.csv_logger import CSVLogger

        return [CSVLogger(save_dir=default_root_dir)]
    if isinstance(logger, Logger):
        return [logger]
    if isinstance(logger, Iterable):
        loggers = list(logger)
        for item in loggers:
            if not _is_logger(item):
                raise TypeError(f"`logger` holds {type(item).__name__}, which is not a `fulmen.loggers.Logger`.")
        return loggers
    if _is_logger(logger):
        return [logger]
    raise TypeError(f"`logger` must be a Logger, a list of loggers, True or False; received {type(logger).__name__}.")


def _is_logger(candidate: Any) -> bool:
    # Lightning takes any object as a logger; a duck-typed one (e.g. `unittest.mock.Mock()`) is accepted here too.
    return isinstance(candidate, Logger) or (not isinstance(candidate, (str, bytes))
                                             and callable(getattr(candidate, "log_metrics", None)))


def log_hyperparameters(loggers: list[Logger], module: Any, datamodule: Any) -> None:
    """Send saved hyperparameters (if `save_hyperparameters` was called) and the model graph to every logger."""
    if not loggers:
        return
    owners = [owner for owner in (module, datamodule) if owner is not None and getattr(owner, "_log_hyperparams", False)]
    params: dict[str, Any] | None = None
    if owners:
        params = {}
        for owner in owners:
            hparams = owner.hparams_initial
            clashes = [key for key in hparams if key in params and params[key] != hparams[key]]
            if clashes:
                raise RuntimeError(  # Lightning's words, then the fix
                    f"Error while merging hparams: the keys {clashes} are present in both the LightningModule's and "
                    "LightningDataModule's hparams but have different values. Rename one of them so the logged "
                    "hyperparameters are unambiguous."
                )
            params.update(hparams)
    for logger in loggers:
        if params is not None:
            logger.log_hyperparams(params)
        logger.log_graph(module)
        logger.save()


def share_logger_versions(loggers: list[Logger], strategy: Any) -> None:
    """Make every rank use the version rank zero created (each rank listing the directories itself could pick
    another number once rank zero's `version_N` exists). Call on every rank, after rank zero made its experiments."""
    if not loggers or strategy.world_size == 1:
        return
    decided = [logger.run_identity() for logger in loggers] if strategy.is_global_zero else None
    decided = strategy.broadcast(decided)
    for logger, identity in zip(loggers, decided):
        if identity is not None:
            logger.adopt_run_identity(identity)
