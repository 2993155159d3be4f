"""Public import path of `CSVLogger` (Lightning's `lightning.pytorch.loggers.csv_logs`); it lives in
`fulmen/loggers/csv_logger.py`."""

from fulmen.loggers.csv_logger import CSVLogger as CSVLogger  # noqa: F401
from fulmen.loggers.csv_logger import ExperimentWriter as ExperimentWriter  # noqa: F401
