"""LightningOptimizer: the optimizer handed to user hooks, routing `step()` through the strategy.

It is an instance of the user's optimizer class (so `isinstance(opt, torch.optim.SGD)` holds) that
shares the wrapped optimizer's state; only `step` differs.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.optim import Optimizer


class LightningOptimizer:
    """Wraps an optimizer so `step()` applies precision scaling, hooks and step counting."""

    _optimizer: Optimizer
    _on_step: Callable[[Optimizer, Callable[[], Any] | None], Any]

    def __new__(cls, optimizer: Optimizer, on_step: Callable[[Optimizer, Callable[[], Any] | None], Any]) -> Any:
        # A class per optimizer type whose MRO puts our `step` before the optimizer's own methods.
        combined = type(f"Lightning{type(optimizer).__name__}", (cls, type(optimizer)),
                        {"_optimizer": optimizer, "_on_step": staticmethod(on_step)})
        wrapper = object.__new__(combined)
        wrapper.__dict__ = optimizer.__dict__  # same param_groups, state and defaults as the original
        return wrapper

    def __init__(self, optimizer: Optimizer, on_step: Any) -> None:
        pass

    def __reduce__(self) -> tuple[Any, tuple[Optimizer, Any]]:
        # The combined class is made per wrapper and cannot be found by name: pickle and deepcopy rebuild the
        # wrapper from the optimizer it shares its state with.
        return LightningOptimizer, (self._optimizer, self._on_step)

    @property
    def optimizer(self) -> Optimizer:
        """The wrapped torch optimizer."""
        return self._optimizer

    @property
    def step(self) -> Callable[..., Any]:
        """Step through the strategy: closure, `on_before_optimizer_step`, clipping, then the real step."""
        # A property (a data descriptor) wins over the shared instance dict, where LR schedulers
        # install their own `step` wrapper on the optimizer.
        return self._strategy_step

    def _strategy_step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        return self._on_step(self._optimizer, closure, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"Lightning{type(self._optimizer).__name__}({self._optimizer!r})"
