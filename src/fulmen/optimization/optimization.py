"""Optimization: one fit's optimizers and LR scheduler configs, and what runs around their steps.

Owns: calling `configure_optimizers` and checking its result, wrapping optimizers for user code (published
on the strategy, where `self.optimizers()` finds them), the hooks before each optimizer step
(`on_before_optimizer_step`, clipping) and the loop's backward. Built from its dependencies; no Trainer.
Does not own: when steps happen (`loops/fit_loop.py`, `scheduler_stepping.py`) nor the step itself
(`LightningOptimizer` → strategy → precision).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.optim import Optimizer

from fulmen.optimization.configure_optimizers import (LRSchedulerConfig, check_scheduler_api, check_schedulers_attached,
                                                     parse_optimizers)
from fulmen.optimization.lightning_optimizer import LightningOptimizer
from fulmen.optimization.placeholder import PlaceholderOptimizer
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.config import TrainerConfig
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.trainer.state import TrainerState


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
    """Holds one fit's optimizers and scheduler configs and runs the hooks around their steps.

    Args:
        hooks: the run's hook dispatch (`configure_optimizers`, `on_before_optimizer_step`, clipping, backward).
        config: the Trainer's flags (gradient clipping).
        state: the counters; manual optimization counts each optimizer step there.
        strategy: steps optimizers and runs backward; it receives the wrapped optimizers and the hooks.
    """

    def __init__(self, hooks: HookDispatch, config: TrainerConfig, state: TrainerState, strategy: Strategy) -> None:
        self._hooks = hooks
        self._config = config
        self._state = state
        self._strategy = strategy
        self.optimizers: list[Optimizer] = []
        self.wrapped_optimizers: list[Any] = []
        self.scheduler_configs: list[LRSchedulerConfig] = []
        self.automatic_schedulers: list[LRSchedulerConfig] = []  # what the fit loop steps by itself
        self._clip_each_step = False
        self.step_guard: Any = None  # `Trainer(on_nonfinite=...)` in a mode that checks every step

    def setup(self, module: LightningModule) -> None:
        """Call `configure_optimizers` for `module`, check the result fits its optimization mode, wrap it."""
        automatic = module.automatic_optimization
        hooks = self._hooks
        output = hooks.configure_optimizers()
        optimizers, configs, _ = parse_optimizers(output, automatic)
        # Lightning's order of checks: several optimizers, schedulers' optimizers, scheduler API.
        if _names_optimizer_idx(module.training_step):
            raise RuntimeError(
                "Training with multiple optimizers is only supported with manual optimization. Remove the "
                "`optimizer_idx` argument from `training_step` (Lightning 2.x no longer passes it), set "
                "`self.automatic_optimization = False` and access your optimizers in `training_step` with "
                "`opt1, opt2, ... = self.optimizers()`."
            )
        if automatic and len(optimizers) > 1:
            raise RuntimeError(
                "Training with multiple optimizers is only supported with manual optimization: "
                f"`configure_optimizers` returned {len(optimizers)}. Set `self.automatic_optimization = False`, then "
                "access your optimizers in `training_step` with `opt1, opt2, ... = self.optimizers()`."
            )
        check_schedulers_attached(optimizers, configs)
        check_scheduler_api(configs, hooks.module_defines("lr_scheduler_step"), automatic)
        _check_optimizers_hold_module_parameters(optimizers, module)
        if not optimizers:
            optimizers = [PlaceholderOptimizer()]  # loops and `self.optimizers()` work unchanged, as in Lightning
        self.optimizers = optimizers
        self.scheduler_configs = configs
        # Under manual optimization the user steps the schedulers; the loop steps none (as in Lightning).
        self.automatic_schedulers = configs if automatic else []
        # Clipping runs through a user-overridable hook; skip the call chain when it cannot do anything
        # (a profiled or traced run calls it every step, as Lightning does, so the report lists it).
        self._clip_each_step = automatic and bool(
            self._config.gradient_clip_val or hooks.module_defines("configure_gradient_clipping")
            or hooks.calls_every_hook)
        # The automatic loop counts its own steps (once per `optimizer_step` hook, however often LBFGS steps).
        on_stepped = None if automatic else self._state.optimizer_stepped
        self.wrapped_optimizers = [
            LightningOptimizer(optimizer, self._strategy, on_stepped) for optimizer in optimizers]
        if self.step_guard is not None:
            self.step_guard.guard_steps(self.wrapped_optimizers)
        self._strategy.connect_optimization(self.wrapped_optimizers, hooks, self._before_step)
        if not automatic and hooks.active_profiler is not None:
            for wrapper in self.wrapped_optimizers:
                _time_manual_steps(wrapper, hooks.active_profiler)

    def _before_step(self, optimizer: Optimizer) -> None:
        """After the closure's backward, before the real step: the hook, then clipping (automatic only)."""
        hooks = self._hooks
        hooks.on_before_optimizer_step(optimizer)
        if self._clip_each_step:
            config = self._config
            hooks.configure_gradient_clipping(optimizer, config.gradient_clip_val, config.gradient_clip_algorithm)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """The loop's backward: the strategy's, which runs the backward hooks around the module's `backward`."""
        self._strategy.backward(loss, self.optimizers[0], *args, **kwargs)


def _time_manual_steps(wrapper: Any, profiler: Any) -> None:
    """Lightning times each manual `optimizer.step()` as "optimizer_step". Each wrapper has a class of its own,
    so only this run's wrapper changes (and unprofiled runs keep the plain `step`)."""
    step = wrapper._strategy_step

    def timed(*args: Any, **kwargs: Any) -> Any:
        with profiler.profile("optimizer_step"):
            return step(*args, **kwargs)

    type(wrapper).step = property(lambda _self: timed)
