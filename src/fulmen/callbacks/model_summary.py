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
        if summarize_kwargs:
            # Lightning forwards these to its table printer, which only RichModelSummary reads.
            raise TypeError(f"`ModelSummary` got unexpected keyword argument(s) {sorted(summarize_kwargs)}: fulmen's "
                            "summary table takes only `max_depth`.")
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
    if index == 0:
        return f"{int(number):,d}"
    # Three significant figures are enough: "2.8 K", but "123 K" rather than "123.1 K".
    return f"{int(number):,d} {labels[index]}" if number >= 100 else f"{number:,.1f} {labels[index]}"


def summarize(module: nn.Module, max_depth: int = 1, bytes_per_parameter: float = 4.0) -> str:
    """Return the summary table of `module` as text."""
    layers = [(name, submodule) for name, submodule in module.named_modules()
              if name and (max_depth == -1 or name.count(".") + 1 <= max_depth)]
    rows = []
    for name, submodule in layers:
        params = sum(p.numel() for p in submodule.parameters())
        mode = "train" if submodule.training else "eval"
        rows.append((name, type(submodule).__name__, human_readable_count(params), mode))
    headers: tuple[str, ...] = ("Name", "Type", "Params", "Mode")
    sizes = _in_out_sizes(module, layers)
    if sizes is not None:
        headers += ("In sizes", "Out sizes")
        rows = [row + sizes.get(name, ("?", "?")) for row, (name, _) in zip(rows, layers)]
    index_width = len(str(len(rows) - 1)) if rows else 1
    widths = [max(len(headers[col]), *(len(row[col]) for row in rows)) if rows else len(headers[col])
              for col in range(len(headers))]

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


def _in_out_sizes(module: nn.Module, layers: list[tuple[str, nn.Module]]) -> dict[str, tuple[str, str]] | None:
    """Run `example_input_array` through the module once and record each layer's input/output shapes."""
    example = getattr(module, "example_input_array", None)
    if example is None:
        return None
    from fulmen.utilities.apply_func import move_data_to_device

    sizes: dict[str, tuple[str, str]] = {}

    def recorder(name: str):  # noqa: ANN202 - returns a forward hook
        def hook(_: nn.Module, inputs: Any, output: Any) -> None:
            inputs = inputs[0] if len(inputs) == 1 else inputs
            sizes.setdefault(name, (_shape(inputs), _shape(output)))
        return hook

    handles = [submodule.register_forward_hook(recorder(name)) for name, submodule in layers]
    modes = {submodule: submodule.training for submodule in module.modules()}
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        module.eval()
        with torch.no_grad():
            example = move_data_to_device(example, device)
            if isinstance(example, (list, tuple)):
                module(*example)
            elif isinstance(example, dict):
                module(**example)
            else:
                module(example)
    finally:
        for handle in handles:
            handle.remove()
        for submodule, training in modes.items():
            submodule.training = training
    return sizes


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shape(item) for item in value) + "]"
    return "?"


def _bytes_per_parameter(trainer: Trainer) -> float:
    name = trainer.precision
    if name.startswith("64"):
        return 8.0
    if name in ("16-true", "bf16-true"):
        return 2.0
    return float(torch.finfo(torch.float32).bits // 8)
