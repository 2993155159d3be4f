"""FSDPPrecision: the precision plugin of `FSDPStrategy` (public: `fulmen.plugins.precision.FSDPPrecision`).

Owns: the mapping of a `precision=` name onto FSDP2's `MixedPrecisionPolicy` (the dtype parameters are
all-gathered in for compute and gradients are reduced in), module conversion for the "-true" modes, the
forward context, and "16-mixed"'s sharded gradient scaler. Sharded parameters keep their own dtype; FSDP casts
the gathered copies.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from fulmen.precision import Precision, ScaledStepping, _default_dtype, floating_to

_DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16,
           "16-mixed": torch.float16, "16-true": torch.float16}
FSDP_PRECISIONS = tuple(_DTYPES)


class FSDPPrecision(ScaledStepping):
    """Precision for `FSDPStrategy`: "32-true", "16-mixed", "bf16-mixed", "16-true" or "bf16-true".

    "-mixed" keeps float32 sharded parameters and computes in the half dtype (FSDP gathers half copies, reduces
    gradients in it, and the step runs under autocast); "16-mixed" also scales the loss with a
    `ShardedGradScaler` (`scaler`, or a new one), whose inf/NaN verdict is shared by every rank so all skip the
    same steps. "-true" converts the module itself.
    """

    def __init__(self, precision: str, scaler: Any = None) -> None:
        if precision not in _DTYPES:
            raise ValueError(f"`FSDPPrecision(precision={precision!r})` is not supported with FSDP; use one of "
                             f"{', '.join(FSDP_PRECISIONS)}.")
        if scaler is not None and precision != "16-mixed":
            raise ValueError(f"`FSDPPrecision(precision={precision!r}, scaler=...)`: only '16-mixed' scales the "
                             "loss; pass `scaler=None` or use '16-mixed'.")
        self.precision = precision
        self._dtype = _DTYPES[precision]
        if scaler is None and precision == "16-mixed":
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            # The device is the autocast one; the scaler finds each gradient's own device when it unscales.
            scaler = ShardedGradScaler("cuda" if torch.cuda.is_available() else "cpu")
        self.scaler = scaler
        # Inputs and new tensors: the compute dtype for "-true", float32 for "-mixed" (autocast casts).
        self._input_dtype = self._dtype if precision.endswith("-true") else torch.float32

    @property
    def mixed_precision_config(self) -> Any:
        """The `torch.distributed.fsdp.MixedPrecisionPolicy` FSDP applies (None for "32-true")."""
        if self.precision == "32-true":
            return None
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=self._dtype, reduce_dtype=self._dtype)

    def convert_module(self, module: nn.Module) -> nn.Module:
        if self.precision.endswith("-true") and self.precision != "32-true":
            return module.to(dtype=self._dtype)
        return module

    def convert_input(self, data: Any) -> Any:
        return floating_to(data, self._input_dtype)

    def convert_output(self, data: Any) -> Any:
        return floating_to(data, torch.get_default_dtype())

    def tensor_init_context(self) -> contextlib.AbstractContextManager:
        return _default_dtype(self._input_dtype)

    def module_init_context(self) -> contextlib.AbstractContextManager:
        return self.tensor_init_context()

    def forward_context(self) -> contextlib.AbstractContextManager:
        if self.precision.endswith("-mixed"):
            return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=self._dtype)
        if self.precision == "32-true":
            return contextlib.nullcontext()
        return _default_dtype(self._dtype)


def fsdp_precision_from(plugin: Precision) -> FSDPPrecision:
    """The FSDPPrecision for a plugin the Trainer's `precision=` flag selected (same name)."""
    if isinstance(plugin, FSDPPrecision):
        return plugin
    from fulmen.precision import DoublePrecision, HalfPrecision, MixedPrecision

    if type(plugin) not in (Precision, DoublePrecision, HalfPrecision, MixedPrecision):
        raise TypeError(f"`FSDPStrategy` works with the `FSDPPrecision` plugin only, found "
                        f"{type(plugin).__name__}; pass `Trainer(precision=...)` or `FSDPPrecision(...)`.")
    return FSDPPrecision(plugin.precision)
