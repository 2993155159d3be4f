"""`Checkpoint`: the base class the Trainer recognises as a checkpointing callback."""

from __future__ import annotations

from fulmen.callbacks.callback import Callback


class Checkpoint(Callback):
    """Base class of checkpointing callbacks (`ModelCheckpoint`, `OnExceptionCheckpoint`, your own).

    The Trainer lists these in `trainer.checkpoint_callbacks`, runs them after every other callback, adds no
    default `ModelCheckpoint` when one is given, and refuses them with `enable_checkpointing=False`.
    """

    _is_checkpoint = True
