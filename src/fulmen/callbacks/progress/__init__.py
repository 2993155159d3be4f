"""Public import path of the progress bars (Lightning's `lightning.pytorch.callbacks.progress`); they live in
`fulmen/callbacks/progress_bar.py`."""

from fulmen.callbacks.progress_bar import ProgressBar as ProgressBar  # noqa: F401
from fulmen.callbacks.progress_bar import TQDMProgressBar as TQDMProgressBar  # noqa: F401

__all__ = ["ProgressBar", "TQDMProgressBar"]
