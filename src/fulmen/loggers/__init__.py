"""Experiment loggers (public: `fulmen.loggers`)."""

from fulmen.loggers.csv_logger import CSVLogger
from fulmen.loggers.logger import Logger, rank_zero_experiment

__all__ = ["CSVLogger", "Logger", "rank_zero_experiment"]
