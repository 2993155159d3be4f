"""ModelSummary: log a table of the module's layers and parameter counts when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.callbacks.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class ModelSummary(Callback):
    """Summarize the module's submodules down to `max_depth` (-1: all levels, 0: no summary) when fit starts.

    `summarize_kwargs` go to `summarize`, the static method that prints the table; subclasses override it to
    change the output (`RichModelSummary` reads `header_style`).
    """

    # The keyword arguments this class's `summarize` reads; any other is refused at construction.
    _SUMMARIZE_KWARGS: tuple[str, ...] = ()

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        unknown = sorted(set(summarize_kwargs) - set(self._SUMMARIZE_KWARGS))
        if unknown:
            accepted = ", ".join(f"`{name}`" for name in self._SUMMARIZE_KWARGS) or "none"
            raise TypeError(f"`{type(self).__name__}` got unexpected keyword argument(s) {unknown}: its `summarize` "
                            f"reads only `max_depth` and these keyword arguments: {accepted}.")
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(f"`max_depth` can be -1, 0 or > 0, got {max_depth}.")
        self._max_depth = max_depth
        self._summarize_kwargs = summarize_kwargs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        from fulmen.utilities.model_summary import summarize

        summary = summarize(pl_module, max_depth=self._max_depth)
        self.summarize(summary._get_summary_data(), summary.total_parameters, summary.trainable_parameters,
                       summary.model_size, summary.total_training_modes, total_flops=summary.total_flops,
                       **self._summarize_kwargs)

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        """Log the summary table (columns as (header, cells) pairs, then the totals) on the "fulmen" logger."""
        from fulmen.utilities.model_summary.model_summary import _format_summary_table

        rank_zero_info("\n" + _format_summary_table(total_parameters, trainable_parameters, model_size,
                                                    total_training_modes, total_flops, *summary_data))
