"""Callbacks (public: `fulmen.callbacks`)."""

from fulmen.callbacks.callback import Callback
from fulmen.callbacks.early_stopping import EarlyStopping
from fulmen.callbacks.lambda_function import LambdaCallback
from fulmen.callbacks.lr_monitor import LearningRateMonitor
from fulmen.callbacks.model_checkpoint import ModelCheckpoint
from fulmen.callbacks.model_summary import ModelSummary
from fulmen.callbacks.progress_bar import ProgressBar, TQDMProgressBar
from fulmen.callbacks.timer import Timer

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "LearningRateMonitor", "ModelCheckpoint", "ModelSummary", "ProgressBar", "Timer", "TQDMProgressBar"]
