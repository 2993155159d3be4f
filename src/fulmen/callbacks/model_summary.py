"""ModelSummary: print a table of the module's layers and parameter counts when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fulmen.callbacks.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


class ModelSummary(Callback):
    """Summarize the module's submodules down to `max_depth` (-1: all levels, 0: no summary)."""

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        self._max_depth = max_depth

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._max_depth == 0 or not trainer.is_global_zero:
            return
        rank_zero_info("\n" + summarize(pl_module, self._max_depth, _bytes_per_parameter(trainer)))


def human_readable_count(number: float) -> str:
    """`66` → "66", `2800` → "2.8 K", `1_200_000` → "1.2 M"."""
    labels = ["", "K", "M", "B", "T"]
    index = 0
    while abs(number) >= 1000 and index < len(labels) - 1:
        number /= 1000
        index += 1
    return f"{int(number):,d}" if index == 0 else f"{number:,.1f} {labels[index]}"


def summarize(module: nn.Module, max_depth: int = 1, bytes_per_parameter: float = 4.0) -> str:
    """Return the summary table of `module` as text."""
    rows = []
    for name, submodule in module.named_modules():
        depth = name.count(".") + 1
        if not name or (max_depth != -1 and depth > max_depth):
            continue
        params = sum(p.numel() for p in submodule.parameters())
        mode = "train" if submodule.training else "eval"
        rows.append((name, type(submodule).__name__, human_readable_count(params), mode))
    headers = ("Name", "Type", "Params", "Mode")
    index_width = len(str(len(rows) - 1)) if rows else 1
    widths = [max(len(headers[col]), *(len(row[col]) for row in rows)) if rows else len(headers[col])
              for col in range(4)]

    def line(index: str, cells: tuple[str, ...]) -> str:
        return f"{index:<{index_width}} | " + " | ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths))

    header = line("", headers)
    rule = "-" * len(header)
    body = [line(str(i), row) for i, row in enumerate(rows)]
    parameters = list(module.parameters())
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    total = sum(p.numel() for p in parameters)
    submodules = list(module.modules())[1:]
    in_train = sum(1 for m in submodules if m.training)
    footer = [
        f"{human_readable_count(trainable):<10}Trainable params",
        f"{human_readable_count(total - trainable):<10}Non-trainable params",
        f"{human_readable_count(total):<10}Total params",
        f"{total * bytes_per_parameter / 1e6:<10,.3f}Total estimated model params size (MB)",
        f"{in_train:<10}Modules in train mode",
        f"{len(submodules) - in_train:<10}Modules in eval mode",
    ]
    return "\n".join([header, rule, *body, rule, *footer])


def _bytes_per_parameter(trainer: Trainer) -> float:
    name = trainer.precision
    if name.startswith("64"):
        return 8.0
    if name in ("16-true", "bf16-true"):
        return 2.0
    return float(torch.finfo(torch.float32).bits // 8)
