"""Public import path of `TQDMProgressBar` (Lightning's `lightning.pytorch.callbacks.progress.tqdm_progress`)."""

from fulmen.callbacks.progress_bar import TQDMProgressBar as TQDMProgressBar  # noqa: F401
