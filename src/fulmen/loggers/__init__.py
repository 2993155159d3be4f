"""Experiment loggers (public: `fulmen.loggers`). Each logger's module, and its package, loads on first use."""

from typing import TYPE_CHECKING

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "rank_zero_experiment"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "CSVLogger": "fulmen.loggers.csv_logger",
    "Logger": "fulmen.loggers.logger",
    "MLFlowLogger": "fulmen.loggers.mlflow",
    "TensorBoardLogger": "fulmen.loggers.tensorboard",
    "rank_zero_experiment": "fulmen.loggers.logger",
})

if TYPE_CHECKING:
    from fulmen.loggers.csv_logger import CSVLogger
    from fulmen.loggers.logger import Logger, rank_zero_experiment
    from fulmen.loggers.mlflow import MLFlowLogger
    from fulmen.loggers.tensorboard import TensorBoardLogger
