"""Model summary: per-layer parameter counts, modes, FLOPs and (with `example_input_array`) input/output shapes,
formatted as the table the `ModelSummary` callback logs when fit starts."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from fulmen.utilities.rank_zero import WarningCache, rank_zero_warn

UNKNOWN_SIZE = "?"
LEFTOVER_PARAMS_NAME = "other params"
NOT_APPLICABLE = "n/a"
_COUNT_UNITS = (" ", "K", "M", "B", "T")
# Bits per stored parameter for the size estimate; mixed precision keeps its parameters in float32.
_PRECISION_BITS = {"64": 64, "64-true": 64, "32": 32, "32-true": 32, "16": 16, "16-true": 16, "bf16": 16,
                   "bf16-true": 16, "16-mixed": 32, "bf16-mixed": 32}
_warning_cache = WarningCache()


class LayerSummary:
    """What the summary shows for one submodule: its type, parameter count, mode, and the input/output shapes of
    its first forward call while attached (`?` until one happens)."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._in_size: str | list | None = None
        self._out_size: str | list | None = None
        self._hook_handle = None if isinstance(module, torch.jit.ScriptModule) else module.register_forward_hook(
            self._record, with_kwargs=True)

    def _record(self, _: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inputs = (*args, *kwargs.values()) if kwargs else args
        self._in_size = parse_batch_shape(inputs[0] if len(inputs) == 1 else inputs)
        self._out_size = parse_batch_shape(output)
        self.detach_hook()  # a module called several times reports its first call

    def __del__(self) -> None:
        self.detach_hook()

    def detach_hook(self) -> None:
        """Stop recording shapes (the summary does this once its example forward has run)."""
        if self._hook_handle is not None:
            self._hook_handle.remove()
            self._hook_handle = None

    @property
    def in_size(self) -> str | list:
        return self._in_size or UNKNOWN_SIZE

    @property
    def out_size(self) -> str | list:
        return self._out_size or UNKNOWN_SIZE

    @property
    def layer_type(self) -> str:
        return type(self._module).__name__

    @property
    def num_parameters(self) -> int:
        return _count(self._module.parameters())

    @property
    def training(self) -> bool:
        return self._module.training


class ModelSummary:
    """Summary of `model`'s submodules down to `max_depth` (-1: every level, 0: none); `str()` gives the table.

    When `model.example_input_array` is set, the model is run once on it (in eval mode, without gradients) to
    record each layer's input and output shapes and FLOPs.
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(f"`max_depth` can be -1, 0 or > 0, got {max_depth}.")
        self._model = model
        self._max_depth = max_depth
        self._flop_counter: Any = None
        self._layer_summary = self.summarize()
        trainer = getattr(model, "_trainer", None)
        bits = 32
        if trainer is not None:
            precision = str(trainer.precision)
            if precision not in _PRECISION_BITS:
                rank_zero_warn(f"Precision {precision} is not supported by the model summary. Estimated model size "
                               "in MB will not be accurate. Using 32 bits instead.", category=UserWarning)
            bits = _PRECISION_BITS.get(precision, 32)
        self._precision_megabytes = bits / 8 * 1e-6

    @property
    def named_modules(self) -> list[tuple[str, nn.Module]]:
        """The (name, submodule) pairs summarized, before the depth cut (the root module excluded)."""
        if self._max_depth == 0:
            return []
        if self._max_depth == 1:
            return list(self._model.named_children())
        return list(self._model.named_modules())[1:]

    @property
    def layer_names(self) -> list[str]:
        return list(self._layer_summary)

    @property
    def layer_types(self) -> list[str]:
        return [layer.layer_type for layer in self._layer_summary.values()]

    @property
    def in_sizes(self) -> list:
        return [layer.in_size for layer in self._layer_summary.values()]

    @property
    def out_sizes(self) -> list:
        return [layer.out_size for layer in self._layer_summary.values()]

    @property
    def param_nums(self) -> list[int]:
        return [layer.num_parameters for layer in self._layer_summary.values()]

    @property
    def training_modes(self) -> list[bool]:
        return [layer.training for layer in self._layer_summary.values()]

    @property
    def total_training_modes(self) -> dict[str, int]:
        """How many submodules (all levels, the root excluded) are in train and in eval mode."""
        modes = [module.training for module in list(self._model.modules())[1:]]
        return {"train": modes.count(True), "eval": modes.count(False)}

    @property
    def total_parameters(self) -> int:
        return _count(self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        return _count(p for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        """Estimated size of the parameters in MB, at the trainer's precision (32 bits without a trainer)."""
        return self.total_parameters * self._precision_megabytes

    @property
    def total_flops(self) -> int:
        """FLOPs of one forward pass on `example_input_array` (0 when the model was not run)."""
        return 0 if self._flop_counter is None else self._flop_counter.get_total_flops()

    @property
    def flop_counts(self) -> dict[str, dict[Any, int]]:
        """Per summarized layer: the FLOPs of each operator it ran."""
        counts = {} if self._flop_counter is None else self._flop_counter.get_flop_counts()
        prefix = type(self._model).__name__
        return {name: dict(counts.get(f"{prefix}.{name}", {})) for name in self.layer_names}

    def summarize(self) -> dict[str, LayerSummary]:
        """Build the per-layer summaries (running `example_input_array` through the model when it is set)."""
        summary = OrderedDict((name, LayerSummary(module)) for name, module in self.named_modules)
        if getattr(self._model, "example_input_array", None) is not None:
            self._forward_example_input()
        for layer in summary.values():
            layer.detach_hook()
        if self._max_depth >= 1:
            for name in [name for name in summary if name.count(".") >= self._max_depth]:
                del summary[name]
        return summary

    def _forward_example_input(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        from fulmen.utilities.apply_func import move_data_to_device

        model = self._model
        sample = model.example_input_array
        if hasattr(model, "on_before_batch_transfer"):  # a LightningModule: the same hooks a batch goes through
            sample = model.on_before_batch_transfer(sample, 0)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        trainer = getattr(model, "_trainer", None)
        sample = (model.transfer_batch_to_device(sample, device, 0) if hasattr(model, "transfer_batch_to_device")
                  else move_data_to_device(sample, device))
        if hasattr(model, "on_after_batch_transfer"):
            sample = model.on_after_batch_transfer(sample, 0)
        modes = {module: module.training for module in model.modules()}
        self._flop_counter = FlopCounterMode(display=False)
        forward_context = contextlib.nullcontext() if trainer is None else trainer.precision_plugin.forward_context()
        model.eval()
        try:
            with torch.no_grad(), forward_context, self._flop_counter:
                if isinstance(sample, (list, tuple)):
                    model(*sample)
                elif isinstance(sample, dict):
                    model(**sample)
                else:
                    model(sample)
        finally:
            for module, training in modes.items():
                module.training = training

    def _get_summary_data(self) -> list[tuple[str, list[str]]]:
        """The table's columns as (header, cells) pairs, with the `other params` row for parameters that belong to
        no summarized layer."""
        columns: list[tuple[str, list[str]]] = [
            (" ", [str(i) for i in range(len(self._layer_summary))]),
            ("Name", self.layer_names),
            ("Type", self.layer_types),
            ("Params", [get_human_readable_count(n) for n in self.param_nums]),
            ("Mode", ["train" if training else "eval" for training in self.training_modes]),
            ("FLOPs", [get_human_readable_count(sum(ops.values())) for ops in self.flop_counts.values()]),
        ]
        if getattr(self._model, "example_input_array", None) is not None:
            columns.append(("In sizes", [str(size) for size in self.in_sizes]))
            columns.append(("Out sizes", [str(size) for size in self.out_sizes]))
        leftover = self.total_parameters - self.total_layer_params
        if leftover > 0:
            extra = {" ": " ", "Name": LEFTOVER_PARAMS_NAME, "Params": get_human_readable_count(leftover)}
            for header, cells in columns:
                cells.append(extra.get(header, NOT_APPLICABLE))
        return columns

    def __str__(self) -> str:
        return _format_summary_table(self.total_parameters, self.trainable_parameters, self.model_size,
                                     self.total_training_modes, self.total_flops, *self._get_summary_data())

    def __repr__(self) -> str:
        return str(self)


def parse_batch_shape(batch: Any) -> str | list:
    """The shape of a tensor as a list, nested for lists/tuples of tensors; `?` for anything else."""
    if hasattr(batch, "shape"):
        return list(batch.shape)
    if isinstance(batch, (list, tuple)):
        return [parse_batch_shape(item) for item in batch]
    return UNKNOWN_SIZE


def get_formatted_model_size(total_model_size: float) -> str:
    """`1234.5678` -> "1,234.568" (MB, three decimals)."""
    return f"{total_model_size:,.3f}"


def get_human_readable_count(number: float) -> str:
    """Abbreviate a count with K, M, B, T: `123` -> "123  ", `1234` -> "1.2 K", `4e14` -> "400 T", `5e15` ->
    "5,000 T" (at most three significant digits before the unit, one decimal below 100)."""
    if number < 0:
        raise ValueError(f"`get_human_readable_count` needs a non-negative number, got {number}.")
    digits = int(math.floor(math.log10(number)) + 1) if number > 0 else 1
    unit = min(math.ceil(digits / 3), len(_COUNT_UNITS)) - 1
    scaled = number * 10 ** (-3 * unit)
    if unit == 0 or scaled >= 100:
        return f"{int(scaled):,d} {_COUNT_UNITS[unit]}"
    return f"{scaled:,.1f} {_COUNT_UNITS[unit]}"


def summarize(lightning_module: nn.Module, max_depth: int = 1) -> ModelSummary:
    """The `ModelSummary` of `lightning_module` down to `max_depth` levels."""
    return ModelSummary(lightning_module, max_depth=max_depth)


def _count(parameters: Any) -> int:
    total = 0
    for p in parameters:
        if isinstance(p, nn.parameter.UninitializedParameter):
            _warning_cache.warn("The total number of parameters detected may be inaccurate because the model contains "
                                "an instance of `UninitializedParameter`. To get an accurate number, set "
                                "`self.example_input_array` in your LightningModule.")
            continue
        total += p.numel()
    return total


def _format_summary_table(total_parameters: int, trainable_parameters: int, model_size: float,
                          total_training_modes: dict[str, int], total_flops: int,
                          *columns: tuple[str, list[str]]) -> str:
    """Lay out the columns (header, cells) as an aligned table followed by the totals."""
    rows = len(columns[0][1]) if columns else 0
    widths = [max([len(header), *(len(str(cell)) for cell in cells)]) for header, cells in columns]
    rule = "-" * (sum(widths) + 3 * (len(columns) + 1))

    def line(cells: list[str]) -> str:
        return " | ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths))

    lines = [line([header for header, _ in columns]), rule]
    lines += [line([str(cells[i]) for _, cells in columns]) for i in range(rows)]
    lines.append(rule)
    totals = [
        (get_human_readable_count(trainable_parameters), "Trainable params"),
        (get_human_readable_count(total_parameters - trainable_parameters), "Non-trainable params"),
        (get_human_readable_count(total_parameters), "Total params"),
        (get_formatted_model_size(model_size), "Total estimated model params size (MB)"),
        (total_training_modes["train"], "Modules in train mode"),
        (total_training_modes["eval"], "Modules in eval mode"),
        (get_human_readable_count(total_flops), "Total Flops"),
    ]
    lines += [f"{value!s:<10}{label}" for value, label in totals]
    return "\n".join(lines)
