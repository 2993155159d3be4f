"""The run's optimizers and schedulers, and the actions users call on them (step, backward, clipping).

Owns: calling `configure_optimizers`, wrapping optimizers for user hooks, the optimizer step through
the strategy (with `on_before_optimizer_step` and clipping), `manual_backward` and `clip_gradients`.
Does not own: when steps happen (`loops/fit_loop.py`).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.optim import Optimizer

from fulmen.core.optimizer import LightningOptimizer
from fulmen.core.optimizer_setup import LRSchedulerConfig, check_scheduler_api, parse_optimizers
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class _NoOptimizer(Optimizer):
    """Stands in when `configure_optimizers` returns None, so the loop (and `global_step`) run unchanged.

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


def _no_closure() -> None:
    return None


def _check_optimizers_hold_module_parameters(optimizers: list[Optimizer], module: torch.nn.Module) -> None:
    """An optimizer over tensors that are not the module's parameters would train nothing of the model, silently."""
    own = {id(parameter) for parameter in module.parameters()}
    for index, optimizer in enumerate(optimizers):
        tensors = [tensor for group in optimizer.param_groups for tensor in group["params"]]
        foreign = sum(id(tensor) not in own for tensor in tensors)
        if not foreign:
            continue
        name = f"optimizer {index} ({type(optimizer).__name__})" if len(optimizers) > 1 else type(optimizer).__name__
        if foreign == len(tensors):
            raise MisconfigurationException(
                f"`configure_optimizers` returned a {name} that holds none of this module's parameters, so "
                "training would not change the model. Build it from `self.parameters()` (or the parameters of "
                "a submodule of `self`); tensors you optimize must be `nn.Parameter` attributes of the module.")
        rank_zero_warn(
            f"`configure_optimizers` returned a {name} holding {foreign} of {len(tensors)} tensors that are not "
            "parameters of this module: they are not saved in checkpoints nor moved with the module. Register "
            "them as `nn.Parameter` attributes of the module (or of one of its submodules).")


def _names_optimizer_idx(training_step: Callable[..., Any]) -> bool:
    try:
        return "optimizer_idx" in inspect.signature(training_step).parameters
    except (TypeError, ValueError):
        return False


class Optimization:
    """Holds optimizers and scheduler configs for one run and performs steps and backward passes."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.optimizers: list[Optimizer] = []
        self.wrapped_optimizers: list[Any] = []
        self.scheduler_configs: list[LRSchedulerConfig] = []
        self.monitor: str | None = None

    def setup(self, automatic: bool) -> None:
        """Call `configure_optimizers` and check the result fits the optimization mode."""
        hooks = self._trainer._hooks
        output = hooks.configure_optimizers()
        optimizers, configs, monitor = parse_optimizers(output, automatic)
        check_scheduler_api(configs, hooks.module_defines("lr_scheduler_step"), automatic)
        if _names_optimizer_idx(self._trainer.lightning_module.training_step):
            raise RuntimeError(
                "`training_step` takes an `optimizer_idx` argument, which Lightning 2.x no longer passes: with "
                "several optimizers set `self.automatic_optimization = False`, remove `optimizer_idx`, and step "
                "them in `training_step` via `opt1, opt2 = self.optimizers()`."
            )
        if automatic and len(optimizers) > 1:
            raise RuntimeError(
                f"`configure_optimizers` returned {len(optimizers)} optimizers, but automatic optimization steps "
                "exactly one. Set `self.automatic_optimization = False` in `__init__` and step them yourself "
                "in `training_step` (manual optimization)."
            )
        _check_optimizers_hold_module_parameters(optimizers, self._trainer.lightning_module)
        if not optimizers:
            optimizers = [_NoOptimizer()]  # loops and `self.optimizers()` work unchanged, as in Lightning
        self.optimizers = optimizers
        self.scheduler_configs = configs
        self.monitor = monitor
        self.wrapped_optimizers = [LightningOptimizer(optimizer, self.step) for optimizer in optimizers]
        self._automatic = automatic
        # Clipping runs through a user-overridable hook; skip the call chain when it cannot do anything.
        self._clip_each_step = automatic and bool(
            self._trainer._config.gradient_clip_val or hooks.module_defines("configure_gradient_clipping"))

    def step(self, optimizer: Optimizer, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """The real optimizer step behind `LightningOptimizer.step`."""
        trainer = self._trainer
        hooks = trainer._hooks

        def before_step() -> None:
            hooks.on_before_optimizer_step(optimizer)
            if self._clip_each_step:
                config = trainer._config
                hooks.configure_gradient_clipping(optimizer, config.gradient_clip_val, config.gradient_clip_algorithm)

        if kwargs:
            raise TypeError(f"`optimizer.step()` got unexpected arguments {sorted(kwargs)}; only `closure` is accepted.")
        output = trainer.strategy.optimizer_step(optimizer, closure or _no_closure, before_step, self._automatic)
        if not self._automatic:
            # Manual optimization counts every optimizer step (two optimizers: two per batch).
            trainer._state.optimizer_stepped()
        return output

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward with hooks and precision scaling, for manual optimization."""
        if self._trainer.lightning_module.automatic_optimization:
            raise MisconfigurationException(
                "`manual_backward` is for manual optimization; with automatic optimization return the loss from "
                "`training_step` instead, or set `self.automatic_optimization = False`."
            )
        self.backward(loss, *args, **kwargs)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        hooks = self._trainer._hooks
        hooks.on_before_backward(loss)
        self._trainer.strategy.backward(loss, hooks.backward, *args, **kwargs)
        hooks.on_after_backward()

    def clip_gradients(self, optimizer: Optimizer, clip_val: float | None, algorithm: str | None) -> None:
        """Clip the gradients of `optimizer`'s parameters, reconciling arguments with the Trainer's flags."""
        config = self._trainer._config
        if clip_val is None:
            clip_val = config.gradient_clip_val or 0.0
        elif config.gradient_clip_val is not None and config.gradient_clip_val != clip_val:
            raise MisconfigurationException(
                f"`Trainer(gradient_clip_val={config.gradient_clip_val})` and `clip_gradients(gradient_clip_val="
                f"{clip_val})` disagree; set the value in one place only."
            )
        if algorithm is None:
            algorithm = config.gradient_clip_algorithm or "norm"
        elif config.gradient_clip_algorithm is not None and config.gradient_clip_algorithm != algorithm:
            raise MisconfigurationException(
                f"`Trainer(gradient_clip_algorithm={config.gradient_clip_algorithm!r})` and `clip_gradients("
                f"gradient_clip_algorithm={algorithm!r})` disagree; set the algorithm in one place only."
            )
        if not isinstance(clip_val, (int, float)):
            raise TypeError(f"`gradient_clip_val` must be a number; received {type(clip_val).__name__}.")
        if algorithm not in ("norm", "value"):
            raise MisconfigurationException(f"`gradient_clip_algorithm={algorithm!r}` is invalid; use 'norm' or 'value'.")
        if clip_val <= 0:
            return
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, clip_val)
