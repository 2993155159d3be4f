"""`LightningModule.toggle_optimizer` / `untoggle_optimizer`: train one optimizer's parameters at a time."""

from __future__ import annotations

from typing import Any

import torch


def toggle_requires_grad(optimizers: list[Any], optimizer: Any) -> dict[torch.Tensor, bool]:
    """Turn off `requires_grad` for every parameter of `optimizers` but `optimizer`'s; return the saved flags."""
    saved: dict[torch.Tensor, bool] = {}
    for other in optimizers:
        for group in other.param_groups:
            for parameter in group["params"]:
                if parameter not in saved:
                    saved[parameter] = parameter.requires_grad
                    parameter.requires_grad = False
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.requires_grad = saved[parameter]
    return saved


def restore_requires_grad(optimizers: list[Any], optimizer: Any, saved: dict[torch.Tensor, bool]) -> None:
    """Put back the flags `toggle_requires_grad` saved, for the parameters of the optimizers other than `optimizer`."""
    real = getattr(optimizer, "optimizer", optimizer)
    for other in optimizers:
        if other is real:
            continue
        for group in other.param_groups:
            for parameter in group["params"]:
                if parameter in saved:
                    parameter.requires_grad = saved[parameter]
