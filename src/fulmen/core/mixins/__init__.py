"""Public import path of `HyperparametersMixin` (Lightning's `lightning.pytorch.core.mixins`); it lives in
`fulmen/core/hparams.py`."""

from fulmen.core.hparams import HyperparametersMixin as HyperparametersMixin  # noqa: F401

__all__ = ["HyperparametersMixin"]
