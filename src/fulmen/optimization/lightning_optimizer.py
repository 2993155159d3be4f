"""LightningOptimizer: the optimizer handed to user hooks, routing `step()` through the strategy.

It is an instance of the user's optimizer class (so `isinstance(opt, torch.optim.SGD)` holds) that
shares the wrapped optimizer's state; only `step` differs. Its step goes straight to the strategy (precision,
closure, `on_before_optimizer_step` and clipping): no Trainer-level object sits in between.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.optim import Optimizer


def _no_closure() -> None:
    return None


class LightningOptimizer:
    """Wraps an optimizer so `step()` applies precision scaling, hooks and step counting.

    Args:
        optimizer: the torch optimizer to wrap.
        strategy: steps it (`strategy.optimizer_step`: precision, closure, then `before_step`).
        before_step: runs after the closure, before the real step (`on_before_optimizer_step`, clipping).
        automatic: whether the fit loop drives the step (automatic optimization).
        on_stepped: called after each step, or None; manual optimization counts `global_step` here.
    """

    _optimizer: Optimizer
    _strategy: Any
    _automatic: bool

    def __new__(cls, optimizer: Optimizer, strategy: Any, before_step: Callable[[], None], automatic: bool = True,
                on_stepped: Callable[[], None] | None = None) -> Any:
        # A class per optimizer type whose MRO puts our `step` before the optimizer's own methods.
        combined = type(f"Lightning{type(optimizer).__name__}", (cls, type(optimizer)), {
            "_optimizer": optimizer, "_strategy": strategy, "_before_step": staticmethod(before_step),
            "_automatic": automatic, "_on_stepped": None if on_stepped is None else staticmethod(on_stepped)})
        wrapper = object.__new__(combined)
        wrapper.__dict__ = optimizer.__dict__  # same param_groups, state and defaults as the original
        return wrapper

    def __init__(self, optimizer: Optimizer, strategy: Any, before_step: Any, automatic: bool = True,
                 on_stepped: Any = None) -> None:
        pass

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The combined class is made per wrapper and cannot be found by name: pickle and deepcopy rebuild the
        # wrapper from the optimizer it shares its state with.
        return LightningOptimizer, (self._optimizer, self._strategy, self._before_step, self._automatic,
                                    self._on_stepped)

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
        if kwargs:
            raise TypeError(f"`optimizer.step()` got unexpected arguments {sorted(kwargs)}; only `closure` is accepted.")
        output = self._strategy.optimizer_step(self._optimizer, closure or _no_closure, self._before_step,
                                               self._automatic)
        if self._on_stepped is not None:
            # Lightning's manual optimization counts every optimizer step (two optimizers: two per batch).
            self._on_stepped()
        return output

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"Lightning{type(self._optimizer).__name__}({self._optimizer!r})"
