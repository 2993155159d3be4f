"""LightningOptimizer: the optimizer handed to user hooks, routing `step()` through the strategy.

It is an instance of the user's optimizer class (so `isinstance(opt, torch.optim.SGD)` holds) that
shares the wrapped optimizer's state; only `step` differs. Its step goes straight to the strategy (precision,
closure, `on_before_optimizer_step` and clipping): no Trainer-level object sits in between.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any, Callable

from torch.optim import Optimizer

from fulmen.utilities.exceptions import MisconfigurationException


def do_nothing_closure() -> None:
    """The closure `optimizer.step()` runs when none is given."""
    return None


class LightningOptimizer:
    """Wraps an optimizer so `step()` applies precision scaling, hooks and step counting.

    Args:
        optimizer: the torch optimizer to wrap.
        strategy: steps it (`strategy.optimizer_step`: the precision runs the closure, `on_before_optimizer_step`
            and clipping, then the real step); the Trainer passes its strategy.
        on_stepped: called after each step, or None; manual optimization counts `global_step` here.
    """

    _optimizer: Optimizer
    _strategy: Any

    def __new__(cls, optimizer: Optimizer, strategy: Any = None, on_stepped: Callable[[], None] | None = None) -> Any:
        # A class per optimizer type whose MRO puts our `step` before the optimizer's own methods.
        combined = type(f"Lightning{type(optimizer).__name__}", (cls, type(optimizer)), {
            "_optimizer": optimizer, "_strategy": strategy,
            "_on_stepped": None if on_stepped is None else staticmethod(on_stepped)})
        wrapper = object.__new__(combined)
        wrapper.__dict__ = optimizer.__dict__  # same param_groups, state and defaults as the original
        return wrapper

    def __init__(self, optimizer: Optimizer, strategy: Any = None, on_stepped: Any = None) -> None:
        pass

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The combined class is made per wrapper and cannot be found by name: pickle and deepcopy rebuild the
        # wrapper from the optimizer it shares its state with.
        return LightningOptimizer, (self._optimizer, self._strategy, self._on_stepped)

    @property
    def optimizer(self) -> Optimizer:
        """The wrapped torch optimizer."""
        return self._optimizer

    @property
    def step(self) -> Callable[..., Any]:
        """Step through the strategy: closure, `on_before_optimizer_step`, clipping, then the real step."""
        # LR schedulers patch `optimizer.step` with a counting wrapper in the optimizer's instance dict, which
        # this wrapper shares; a property (a data descriptor) wins over the instance dict, so ours still runs.
        return self._strategy_step

    def _strategy_step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        strategy = self._strategy
        if strategy is None:
            raise RuntimeError("This LightningOptimizer is not attached to a strategy; step the optimizers that "
                               "`self.optimizers()` returns inside a Trainer run.")
        if closure is not None and not callable(closure):
            raise MisconfigurationException(  # Lightning's words, then what was passed
                "When `optimizer.step(closure)` is called, the closure should be callable; received "
                f"{type(closure).__name__}. Pass a function that computes the loss (and calls backward), or no closure."
            )
        # `**kwargs` reach the wrapped optimizer's `step`, as in Lightning.
        output = strategy.optimizer_step(self._optimizer, closure or do_nothing_closure, **kwargs)
        if self._on_stepped is not None:
            # Lightning's manual optimization counts every optimizer step (two optimizers: two per batch).
            self._on_stepped()
        return output

    @contextlib.contextmanager
    def toggle_model(self, sync_grad: bool = True) -> Generator[None, None, None]:
        """Only this optimizer's parameters require grad inside the block (`toggle_optimizer`); with
        `sync_grad=False` a multi-process strategy also skips the gradient all-reduce there (accumulation)."""
        strategy = self._strategy
        module = strategy.lightning_module
        blocked = strategy.accumulation_context(not sync_grad)
        with blocked:
            module.toggle_optimizer(self)
            try:
                yield
            finally:
                module.untoggle_optimizer(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    # No __repr__ of its own: the optimizer's, under this class's name ("LightningSGD (...)"), as in Lightning.
