"""Callbacks (public: `fulmen.callbacks`)."""

from fulmen.callbacks.callback import Callback
from fulmen.callbacks.checkpoint import Checkpoint
from fulmen.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
from fulmen.callbacks.lambda_function import LambdaCallback
from fulmen.callbacks.lr_monitor import LearningRateMonitor
from fulmen.callbacks.model_checkpoint import ModelCheckpoint
from fulmen.callbacks.model_summary import ModelSummary
from fulmen.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from fulmen.callbacks.prediction_writer import BasePredictionWriter
from fulmen.callbacks.progress_bar import ProgressBar, TQDMProgressBar
from fulmen.callbacks.stochastic_weight_avg import StochasticWeightAveraging
from fulmen.callbacks.timer import Timer
from fulmen.callbacks.weight_averaging import EMAWeightAveraging, WeightAveraging

__all__ = [
    "BasePredictionWriter", "Callback", "Checkpoint", "EarlyStopping", "EarlyStoppingReason", "EMAWeightAveraging",
    "LambdaCallback", "LearningRateMonitor", "ModelCheckpoint", "ModelSummary", "OnExceptionCheckpoint", "ProgressBar",
    "StochasticWeightAveraging", "Timer", "TQDMProgressBar", "WeightAveraging",
]
