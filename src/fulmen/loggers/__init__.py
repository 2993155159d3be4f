"""Experiment loggers (public: `fulmen.loggers`). Each logger's module, and its package, loads on first use."""

from typing import TYPE_CHECKING

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["CSVLogger", "CometLogger", "LitLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger",
           "rank_zero_experiment"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "CSVLogger": "fulmen.loggers.csv_logger",
    "CometLogger": "fulmen.loggers.comet",
    "LitLogger": "fulmen.loggers.litlogger",
    "Logger": "fulmen.loggers.logger",
    "MLFlowLogger": "fulmen.loggers.mlflow",
    "TensorBoardLogger": "fulmen.loggers.tensorboard",
    "WandbLogger": "fulmen.loggers.wandb",
    "rank_zero_experiment": "fulmen.loggers.logger",
})

if TYPE_CHECKING:
    from fulmen.loggers.comet import CometLogger
    from fulmen.loggers.csv_logger import CSVLogger
    from fulmen.loggers.litlogger import LitLogger
    from fulmen.loggers.logger import Logger, rank_zero_experiment
    from fulmen.loggers.mlflow import MLFlowLogger
    from fulmen.loggers.tensorboard import TensorBoardLogger
    from fulmen.loggers.wandb import WandbLogger
