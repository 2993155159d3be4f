"""Gradient norms per parameter, ready for `self.log_dict` (Lightning's `utilities.grads`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module

__all__ = ["grad_norm"]


def grad_norm(module: Module, norm_type: float | int | str, group_separator: str = "/") -> dict[str, Tensor]:
    """The `norm_type`-norm of each parameter's gradient, and of all gradients together.

    Keys are `grad_{p}_norm{group_separator}{parameter name}` and `grad_{p}_norm_total`, with `p` the norm as a
    float (`2.0`, `inf`); parameters without a gradient are left out, and an empty dict means no gradients.
    `norm_type` may be any positive number or `"inf"`.
    """
    p = float(norm_type)
    if p <= 0:
        raise ValueError(f"`norm_type` must be a positive number or 'inf' (infinity norm); got {p}.")
    norms = {f"grad_{p}_norm{group_separator}{name}": param.grad.detach().norm(p)
             for name, param in module.named_parameters() if param.grad is not None}
    if norms:
        # The norm of the per-parameter norms is the norm of all gradients viewed as one vector.
        norms[f"grad_{p}_norm_total"] = torch.stack(list(norms.values())).norm(p)
    return norms
