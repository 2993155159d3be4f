"""Public import path of the precision plugins (Lightning's `lightning.pytorch.plugins.precision`); they live in
`fulmen/precision.py`."""

from fulmen.precision import DoublePrecision as DoublePrecision  # noqa: F401
from fulmen.precision import HalfPrecision as HalfPrecision  # noqa: F401
from fulmen.precision import MixedPrecision as MixedPrecision  # noqa: F401
from fulmen.precision import Precision as Precision  # noqa: F401

__all__ = ["DoublePrecision", "HalfPrecision", "MixedPrecision", "Precision"]
