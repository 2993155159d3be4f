"""Precision: how the forward pass, backward pass and optimizer step handle dtypes and loss scaling.

Owns: autocast contexts, module and input conversion, backward scaling, unscaling before clipping,
stepping through a GradScaler, and the scaler's checkpoint state. One small class per mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Any, Callable

import torch
from torch import nn

from fulmen.utilities.apply_func import apply_to_collection
from fulmen.utilities.clip_grad import clip_grad_norm_  # DTensors on several meshes get one total norm
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
PRECISION_NAMES = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


class Precision:
    """Full float32 precision: nothing is converted and nothing is scaled.

    Subclass it and pass it as `Trainer(plugins=[...])`: the Trainer runs the step methods under its
    `*_step_context`, backward through `pre_backward`/`backward`/`post_backward`, optimizer steps through
    `optimizer_step` and gradient clipping through `clip_gradients`, so each override takes effect.
    """

    precision = "32-true"  # the `Trainer(precision=...)` name this plugin implements
    _clip_norm: Any = None  # the last pre-clip total norm of `clip_grad_by_norm` (run fingerprints reuse it)

    # -- module, tensors and data -------------------------------------------------------------------

    def connect(self, model: nn.Module, optimizers: list[torch.optim.Optimizer],
                lr_schedulers: list[Any]) -> tuple[nn.Module, list[torch.optim.Optimizer], list[Any]]:
        """Called once fit's optimizers exist; may wrap or replace the model, optimizers and schedulers."""
        return model, optimizers, lr_schedulers

    def convert_module(self, module: nn.Module) -> nn.Module:
        """Convert the module's parameters to this precision before it is moved to the device."""
        return module

    def convert_input(self, data: Any) -> Any:
        """Convert a batch as it comes from the dataloader (before it is moved to the device)."""
        return data

    def convert_output(self, data: Any) -> Any:
        """Convert a step's output back to the default precision."""
        return data

    def tensor_init_context(self) -> contextlib.AbstractContextManager:
        """A context in which new tensors get this precision's dtype (`trainer.init_module`)."""
        return contextlib.nullcontext()

    def module_init_context(self) -> contextlib.AbstractContextManager:
        """A context in which new modules get this precision's dtype."""
        return self.tensor_init_context()

    # -- forward ------------------------------------------------------------------------------------

    def forward_context(self) -> contextlib.AbstractContextManager:
        """The context every step method runs in (autocast, default dtype)."""
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def train_step_context(self) -> Generator[None, None, None]:
        """The context `training_step` runs in."""
        with self.forward_context():
            yield

    @contextlib.contextmanager
    def val_step_context(self) -> Generator[None, None, None]:
        """The context `validation_step` runs in."""
        with self.forward_context():
            yield

    @contextlib.contextmanager
    def test_step_context(self) -> Generator[None, None, None]:
        """The context `test_step` runs in."""
        with self.forward_context():
            yield

    @contextlib.contextmanager
    def predict_step_context(self) -> Generator[None, None, None]:
        """The context `predict_step` runs in."""
        with self.forward_context():
            yield

    # -- backward -----------------------------------------------------------------------------------

    def pre_backward(self, tensor: torch.Tensor, module: Any) -> torch.Tensor:
        """Runs `on_before_backward` (callbacks, then the module) on the loss; returns the loss to backpropagate."""
        hooks = getattr(getattr(getattr(module, "_trainer", None), "strategy", None), "_hooks", None)  # fit's hooks
        if hooks is not None:
            hooks.on_before_backward(tensor)
        return tensor

    def backward(self, tensor: torch.Tensor, model: Any, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        """Backpropagate `tensor` through the module's `backward` hook (`*args`/`**kwargs` go to it)."""
        hooks = getattr(getattr(getattr(model, "_trainer", None), "strategy", None), "_hooks", None)
        if hooks is None:
            model.backward(tensor, *args, **kwargs)
        else:
            hooks.backward(tensor, *args, **kwargs)

    def post_backward(self, tensor: torch.Tensor, module: Any) -> torch.Tensor:
        """Runs `on_after_backward`; returns the detached loss."""
        hooks = getattr(getattr(getattr(module, "_trainer", None), "strategy", None), "_hooks", None)
        if hooks is not None:
            hooks.on_after_backward()
        return tensor.detach()

    # -- optimizer step and clipping ---------------------------------------------------------------

    def _after_closure(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        """After the closure's backward, before the real step: `on_before_optimizer_step`, then clipping."""
        before_step = getattr(getattr(getattr(model, "_trainer", None), "strategy", None), "_before_step", None)
        if before_step is not None:
            before_step(optimizer)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, model: Any, closure: Callable[[], Any],
                       **kwargs: Any) -> Any:
        """Step `optimizer` (`**kwargs` go to its `step`): the closure (forward and backward), then
        `on_before_optimizer_step` and clipping, then the update."""

        def closure_then_hooks() -> Any:
            result = closure()
            self._after_closure(model, optimizer)
            return result

        return optimizer.step(closure=closure_then_hooks, **kwargs)

    def main_params(self, optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
        """The parameters `optimizer` updates (what clipping works on)."""
        for group in optimizer.param_groups:
            yield from group["params"]

    def clip_gradients(self, optimizer: torch.optim.Optimizer, clip_val: int | float = 0.0,
                       gradient_clip_algorithm: Any = "norm") -> None:
        """Clip the gradients of `optimizer`'s parameters (nothing when `clip_val <= 0`)."""
        if clip_val <= 0:
            return
        algorithm = getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm)
        if algorithm == "value":
            self.clip_grad_by_value(optimizer, clip_val)
        elif algorithm == "norm":
            self.clip_grad_by_norm(optimizer, clip_val)
        else:
            raise ValueError(f"`gradient_clip_algorithm={gradient_clip_algorithm!r}` is invalid; use 'norm' or "
                             "'value'.")

    def clip_grad_by_value(self, optimizer: torch.optim.Optimizer, clip_val: int | float) -> None:
        torch.nn.utils.clip_grad_value_(_with_grad(self.main_params(optimizer)), clip_value=clip_val)

    def clip_grad_by_norm(self, optimizer: torch.optim.Optimizer, clip_val: int | float) -> None:
        self._clip_norm = clip_grad_norm_(_with_grad(self.main_params(optimizer)), clip_val)

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Make gradients true-scale before they are read or clipped (no-op without a scaler)."""

    # -- checkpoint state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores for this plugin (a GradScaler's state)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add to the checkpoint being saved (after the plugin's `state_dict` is stored)."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read from the checkpoint being restored."""

    def teardown(self) -> None:
        """Called when the strategy tears down after each run."""


class _DtypePrecision(Precision):
    """Parameters and floating inputs in one dtype; new tensors default to it inside the step methods."""

    _dtype = torch.float64

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.to(self._dtype)

    def convert_input(self, data: Any) -> Any:
        return floating_to(data, self._dtype)

    def convert_output(self, data: Any) -> Any:
        return floating_to(data, torch.get_default_dtype())

    def tensor_init_context(self) -> contextlib.AbstractContextManager:
        return _default_dtype(self._dtype)

    def forward_context(self) -> contextlib.AbstractContextManager:
        return _default_dtype(self._dtype)


class DoublePrecision(_DtypePrecision):
    """Parameters and floating inputs in float64."""

    precision = "64-true"


class HalfPrecision(_DtypePrecision):
    """Parameters and floating inputs in float16 or bfloat16 (`precision="16-true"` or `"bf16-true"`)."""

    precision = "16-true"

    def __init__(self, precision: str = "16-true") -> None:
        if precision not in ("16-true", "bf16-true"):
            raise ValueError(f"`HalfPrecision(precision={precision!r})` is not supported; use '16-true' or "
                             "'bf16-true'.")
        self.precision = precision
        self._dtype = torch.bfloat16 if precision == "bf16-true" else torch.float16


class ScaledStepping(Precision):
    """Stepping through `self.scaler` (a GradScaler, or None for plain stepping): the loss is scaled before
    backward, gradients are unscaled before hooks and clipping read them, the scaler skips inf/NaN steps.
    Shared by `MixedPrecision` and FSDP's precision ("16-mixed" with a sharded scaler)."""

    scaler: Any = None

    def pre_backward(self, tensor: torch.Tensor, module: Any) -> torch.Tensor:
        # Lightning scales before `on_before_backward`, so the hook sees the scaled loss under "16-mixed".
        if self.scaler is not None:
            tensor = self.scaler.scale(tensor)
        return super().pre_backward(tensor, module)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, model: Any, closure: Callable[[], Any],
                       **kwargs: Any) -> Any:
        if self.scaler is None:
            return super().optimizer_step(optimizer, model, closure, **kwargs)
        if isinstance(optimizer, torch.optim.LBFGS):
            raise MisconfigurationException("LBFGS re-evaluates its closure, which a GradScaler cannot scale; "
                                            "use precision='bf16-mixed' or '32-true' with LBFGS.")
        result = closure()
        skip_step = result is None and getattr(model, "automatic_optimization", False)
        if not skip_step and not _unscales_itself(optimizer):
            self.scaler.unscale_(optimizer)  # hooks and clipping must see true-scale gradients
        self._after_closure(model, optimizer)
        if skip_step:
            return None  # training_step returned None: no backward ran, nothing to step
        # The scaler skips the step when gradients hold inf/NaN, and lowers its scale.
        step_output = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return step_output

    def clip_gradients(self, optimizer: torch.optim.Optimizer, clip_val: int | float = 0.0,
                       gradient_clip_algorithm: Any = "norm") -> None:
        if clip_val > 0 and _unscales_itself(optimizer):
            raise RuntimeError(f"{type(optimizer).__qualname__} unscales its gradients inside its own step (a fused "
                               "optimizer?), so they cannot be clipped before it; turn gradient clipping off or use "
                               "a non-fused optimizer.")
        super().clip_gradients(optimizer, clip_val, gradient_clip_algorithm)

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)


class MixedPrecision(ScaledStepping):
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

    def autocast_context_manager(self) -> torch.autocast:
        """The `torch.autocast` the step methods run in."""
        return torch.autocast(self.device, dtype=self._dtype)

    def forward_context(self) -> contextlib.AbstractContextManager:
        return self.autocast_context_manager()


def _unscales_itself(optimizer: torch.optim.Optimizer) -> bool:
    # torch's fused optimizers take the GradScaler's scale and unscale inside `step`.
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def _with_grad(parameters: Iterator[torch.Tensor]) -> list[torch.Tensor]:
    return [p for p in parameters if p.grad is not None]


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


def floating_to(data: Any, dtype: torch.dtype) -> Any:
    """Every floating-point tensor of a nested collection cast to `dtype`; other tensors and values as they are."""
    return apply_to_collection(data, torch.Tensor, lambda t: t.to(dtype) if t.is_floating_point() else t)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):  # noqa: ANN202
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
