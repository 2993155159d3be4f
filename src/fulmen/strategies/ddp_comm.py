"""DDPStrategy's communication options: `ddp_comm_hook/state/wrapper`, post-local SGD model averaging, and
checking the extra keyword arguments that go to `DistributedDataParallel`.

Owns: validating those options when the strategy is built (so a mistake fails before any process starts)
and registering them on the wrapped model.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch.nn.parallel import DistributedDataParallel

from fulmen.utilities.rank_zero import rank_zero_info

# Set by DDPStrategy itself; passing them again through **kwargs would be ambiguous.
_OWNED_BY_STRATEGY = ("module", "device_ids", "output_device", "process_group")


def _check_ddp_kwargs(kwargs: dict[str, Any]) -> None:
    """Reject extra `DDPStrategy(**kwargs)` that `DistributedDataParallel` would refuse only when `fit` starts."""
    accepted = set(inspect.signature(DistributedDataParallel.__init__).parameters) - {"self", *_OWNED_BY_STRATEGY}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(f"`DDPStrategy` got unexpected keyword argument(s) {unknown}: extra keywords go to "
                        f"`torch.nn.parallel.DistributedDataParallel`, which accepts {sorted(accepted)}.")


class _CommHookConfig:
    """The validated comm-hook options of one DDPStrategy."""

    def __init__(self, state: object | None, hook: Callable | None, wrapper: Callable | None,
                 averaging_period: int | None) -> None:
        if hook is None and (state is not None or wrapper is not None):
            given = "ddp_comm_state" if state is not None else "ddp_comm_wrapper"
            raise ValueError(f"`DDPStrategy({given}=...)` only takes effect with a `ddp_comm_hook`; pass the hook "
                             "too (e.g. `torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook`).")
        for name, value in (("ddp_comm_hook", hook), ("ddp_comm_wrapper", wrapper)):
            if value is not None and not callable(value):
                raise TypeError(f"`DDPStrategy({name}=...)` must be callable; received {type(value).__name__}.")
        post_local_sgd = _is_post_local_sgd_state(state)
        if averaging_period is not None:
            if isinstance(averaging_period, bool) or not isinstance(averaging_period, int) or averaging_period < 1:
                raise ValueError(f"`DDPStrategy(model_averaging_period={averaging_period!r})` must be an int >= 1.")
            if not post_local_sgd:
                raise ValueError(
                    "`DDPStrategy(model_averaging_period=...)` averages parameters for post-local SGD: pass "
                    "`ddp_comm_state=post_localSGD_hook.PostLocalSGDState(...)` and "
                    "`ddp_comm_hook=post_localSGD_hook.post_localSGD_hook` with it."
                )
        elif post_local_sgd:
            raise ValueError("Post-local SGD (`ddp_comm_state=PostLocalSGDState(...)`) needs "
                             "`DDPStrategy(model_averaging_period=N)`: how many steps between parameter averaging.")
        self.state, self.hook, self.wrapper = state, hook, wrapper
        self.averaging_period = averaging_period

    def register(self, model: DistributedDataParallel) -> Any:
        """Register the hook on `model`; return the model averager for post-local SGD (else None)."""
        if self.hook is None:
            return None
        hook = self.hook
        if self.wrapper is not None:
            rank_zero_info(f"DDP comm wrapper is provided, apply {_name(self.wrapper)}({_name(hook)}).")
            hook = self.wrapper(hook)
        model.register_comm_hook(state=self.state, hook=hook)
        if self.averaging_period is None:
            return None
        from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

        return PeriodicModelAverager(period=self.averaging_period, warmup_steps=self.state.start_localSGD_iter)


def _is_post_local_sgd_state(state: object | None) -> bool:
    if state is None:
        return False
    from torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook import PostLocalSGDState

    return isinstance(state, PostLocalSGDState)


def _name(function: Callable) -> str:
    return getattr(function, "__qualname__", type(function).__name__)
