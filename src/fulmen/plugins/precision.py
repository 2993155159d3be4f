"""Public import path of the precision plugins (Lightning's `lightning.pytorch.plugins.precision`); they live in
`fulmen/precision.py` (FSDP's in `fulmen/strategies/fsdp_precision.py`)."""

from fulmen.precision import DoublePrecision as DoublePrecision  # noqa: F401
from fulmen.strategies.fsdp_precision import FSDPPrecision as FSDPPrecision  # noqa: F401
from fulmen.precision import HalfPrecision as HalfPrecision  # noqa: F401
from fulmen.precision import MixedPrecision as MixedPrecision  # noqa: F401
from fulmen.precision import Precision as Precision  # noqa: F401

__all__ = ["DoublePrecision", "FSDPPrecision", "HalfPrecision", "MixedPrecision", "Precision"]
