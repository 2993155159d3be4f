"""Experiment loggers (public: `fulmen.loggers`). TensorBoard and MLflow load their packages lazily."""

from fulmen.loggers.csv_logger import CSVLogger
from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.mlflow import MLFlowLogger
from fulmen.loggers.tensorboard import TensorBoardLogger

__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "rank_zero_experiment"]
