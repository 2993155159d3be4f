"""Earlier home of the progress bars; they live in `fulmen.callbacks.progress` (Lightning's path)."""

from fulmen.callbacks.progress.progress_bar import ProgressBar
from fulmen.callbacks.progress.tqdm_progress import TQDMProgressBar

__all__ = ["ProgressBar", "TQDMProgressBar"]
