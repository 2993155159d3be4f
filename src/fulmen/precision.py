"""Precision: how the forward pass, backward pass and optimizer step handle dtypes and loss scaling.

Owns: autocast contexts, module and input conversion, backward scaling, unscaling before clipping,
stepping through a GradScaler, and the scaler's checkpoint state. One small class per mode.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn

from fulmen.utilities.apply_func import apply_to_collection
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
PRECISION_NAMES = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


class Precision:
    """Full float32 precision: nothing is converted and nothing is scaled."""

    precision = "32-true"  # the `Trainer(precision=...)` name this plugin implements

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module

    def convert_input(self, batch: Any) -> Any:
        return batch

    def forward_context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any],
                       before_step: Callable[[], None], automatic: bool = True) -> Any:
        """Step `optimizer`, calling `closure` (forward+backward) then `before_step` (hooks, clipping)."""

        def closure_then_hooks() -> Any:
            result = closure()
            before_step()
            return result

        return optimizer.step(closure=closure_then_hooks)

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Make gradients true-scale before they are read or clipped (no-op without a scaler)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class DoublePrecision(Precision):
    """Parameters and floating inputs in float64."""

    precision = "64-true"
    _dtype = torch.float64

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.to(self._dtype)

    def convert_input(self, batch: Any) -> Any:
        dtype = self._dtype
        return apply_to_collection(batch, torch.Tensor, lambda t: t.to(dtype) if t.is_floating_point() else t)

    def forward_context(self) -> contextlib.AbstractContextManager:
        return _default_dtype(self._dtype)


class HalfPrecision(DoublePrecision):
    """Parameters and floating inputs in float16 or bfloat16 (`precision="16-true"` or `"bf16-true"`)."""

    def __init__(self, precision: str = "16-true") -> None:
        if precision not in ("16-true", "bf16-true"):
            raise ValueError(f"`HalfPrecision(precision={precision!r})` is not supported; use '16-true' or "
                             "'bf16-true'.")
        self.precision = precision
        self._dtype = torch.bfloat16 if precision == "bf16-true" else torch.float16


class MixedPrecision(Precision):
    """Autocast the forward pass on `device` ("cuda", "cpu", ...); "16-mixed" scales the loss with a GradScaler
    (`scaler`, or a new one), "bf16-mixed" needs none."""

    def __init__(self, precision: str, device: str, scaler: torch.amp.GradScaler | None = None) -> None:
        if precision not in ("16-mixed", "bf16-mixed"):
            raise ValueError(f"`MixedPrecision(precision={precision!r})` is not supported; use '16-mixed' or "
                             "'bf16-mixed'.")
        if scaler is not None and precision == "bf16-mixed":
            raise MisconfigurationException(f"`precision='bf16-mixed'` does not use a scaler, found {scaler}; "
                                            "pass `scaler=None` or use '16-mixed'.")
        self.precision = precision
        self.device = device
        self._dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        if scaler is None and precision == "16-mixed":
            scaler = torch.amp.GradScaler(device)
        self.scaler = scaler

    def forward_context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device, dtype=self._dtype)

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any],
                       before_step: Callable[[], None], automatic: bool = True) -> Any:
        if self.scaler is None:
            return super().optimizer_step(optimizer, closure, before_step, automatic)
        if isinstance(optimizer, torch.optim.LBFGS):
            raise MisconfigurationException("LBFGS re-evaluates its closure, which a GradScaler cannot scale; "
                                            "use precision='bf16-mixed' or '32-true' with LBFGS.")
        result = closure()
        self.scaler.unscale_(optimizer)  # hooks and clipping must see true-scale gradients
        before_step()
        if automatic and result is None:
            return None  # training_step returned None: no backward ran, nothing to step
        # The scaler skips the step when gradients hold inf/NaN, and lowers its scale.
        step_output = self.scaler.step(optimizer)
        self.scaler.update()
        return step_output

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def select_precision(value: Any, device_type: str) -> Precision:
    """Build the Precision for `Trainer(precision=value)` on a device of `device_type`."""
    if isinstance(value, Precision):
        return value
    name = _ALIASES.get(str(value), str(value)) if value is not None else "32-true"
    if str(value) in ("16", "bf16"):
        rank_zero_warn(f"`precision={value!r}` is supported for historical reasons but discouraged; use "
                       f"`precision={name!r}` instead.")
    if name not in PRECISION_NAMES:
        raise ValueError(
            f"`precision={value!r}` is not supported; choose one of {', '.join(PRECISION_NAMES)} "
            "(or the aliases 64, 32, 16, 'bf16')."
        )
    if name == "32-true":
        return Precision()
    if name == "64-true":
        return DoublePrecision()
    if name in ("16-true", "bf16-true"):
        return HalfPrecision(name)
    if name == "16-mixed" and device_type == "cpu":
        rank_zero_warn("`precision='16-mixed'` (float16 autocast with loss scaling) needs a CUDA device; on CPU "
                       "fulmen uses `precision='bf16-mixed'` instead, as Lightning does.")
        name = "bf16-mixed"
    return MixedPrecision(name, device_type)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):  # noqa: ANN202
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
