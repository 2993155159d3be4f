"""PlaceholderOptimizer: stands in when `configure_optimizers` returns None (Lightning's `_MockOptimizer`)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim import Optimizer


class PlaceholderOptimizer(Optimizer):
    """Lets the loop (and `global_step`) run unchanged without an optimizer; checkpoints and LR logging skip it.

    Like Lightning's placeholder it has no parameter groups and an empty state.
    """

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        pass  # keeps `param_groups == []`: there is nothing to optimize

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass
