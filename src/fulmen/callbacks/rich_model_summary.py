"""RichModelSummary: the model summary as a rich table (rich is an optional extra, imported when it prints)."""

from __future__ import annotations

from typing import Any

from fulmen.callbacks.model_summary import ModelSummary
from fulmen.callbacks.progress.rich_progress import _require_rich


class RichModelSummary(ModelSummary):
    """`ModelSummary` printed as a rich table on rich's console (the one a `RichProgressBar` configures).

    Args:
        max_depth: deepest level of submodules listed (-1: all, 0: no summary).
        header_style: rich style of the table's header row (default "bold magenta").
    """

    _SUMMARIZE_KWARGS = ("header_style",)

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        _require_rich("RichModelSummary")
        super().__init__(max_depth, **summarize_kwargs)

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        """Print the layer table and the totals grid on rich's console."""
        from rich import get_console
        from rich.table import Table

        from fulmen.utilities.model_summary import get_formatted_model_size, get_human_readable_count

        console = get_console()
        headers = [header for header, _ in summary_data]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        right_aligned = {"Params", "Params per Device", "FLOPs", "In sizes", "Out sizes"}
        for header in headers:
            table.add_column(header, justify="right" if header in right_aligned else "left",
                             no_wrap=header == "Name", style="dim" if header == " " else
                             "white" if header in ("In sizes", "Out sizes") else None)
        for row in zip(*(cells for _, cells in summary_data)):
            table.add_row(*row)
        console.print(table)

        def count(number: int) -> str:
            return f"{get_human_readable_count(int(number)):<10}"

        grid = Table.grid(expand=True)
        grid.add_column()
        grid.add_column()
        grid.add_row(f"[bold]Trainable params[/]: {count(trainable_parameters)}")
        grid.add_row(f"[bold]Non-trainable params[/]: {count(total_parameters - trainable_parameters)}")
        grid.add_row(f"[bold]Total params[/]: {count(total_parameters)}")
        grid.add_row(f"[bold]Total estimated model params size (MB)[/]: {get_formatted_model_size(model_size):<10}")
        grid.add_row(f"[bold]Modules in train mode[/]: {total_training_modes['train']}")
        grid.add_row(f"[bold]Modules in eval mode[/]: {total_training_modes['eval']}")
        grid.add_row(f"[bold]Total FLOPs[/]: {get_human_readable_count(total_flops)}")
        console.print(grid)
