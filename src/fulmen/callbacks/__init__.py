"""Callbacks (public: `fulmen.callbacks`)."""

from fulmen.callbacks.callback import Callback
from fulmen.callbacks.model_summary import ModelSummary
from fulmen.callbacks.progress_bar import ProgressBar, TQDMProgressBar

__all__ = ["Callback", "ModelSummary", "ProgressBar", "TQDMProgressBar"]
