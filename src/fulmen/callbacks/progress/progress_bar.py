"""Public import path of `ProgressBar` (Lightning's `lightning.pytorch.callbacks.progress.progress_bar`)."""

from fulmen.callbacks.progress_bar import ProgressBar as ProgressBar  # noqa: F401
