"""Tuning a model's learning rate and batch size (public: `fulmen.tuner`, Lightning's `lightning.pytorch.tuner`)."""

from fulmen.tuner.tuning import Tuner

__all__ = ["Tuner"]
