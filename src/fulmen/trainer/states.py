"""Public import path of the Trainer's state enums (Lightning's `lightning.pytorch.trainer.states`); they live
in `fulmen/trainer/state.py`."""

from fulmen.trainer.state import RunningStage as RunningStage  # noqa: F401
from fulmen.trainer.state import TrainerFn as TrainerFn  # noqa: F401
from fulmen.trainer.state import TrainerState as TrainerState  # noqa: F401
from fulmen.trainer.state import TrainerStatus as TrainerStatus  # noqa: F401

__all__ = ["RunningStage", "TrainerFn", "TrainerState", "TrainerStatus"]
