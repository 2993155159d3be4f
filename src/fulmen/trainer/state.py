"""What the Trainer is doing (fn, stage, status) and the counters every loop shares."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class TrainerFn(str, Enum):
    """The user-facing entry point that is running."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(str, Enum):
    """The loop that is running; `fit` alternates between training, sanity checking and validating."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> str:
        """The prefix of this stage's dataloader hook ("val" for validation and the sanity check)."""
        return "val" if self in (RunningStage.VALIDATING, RunningStage.SANITY_CHECKING) else self.value


class TrainerStatus(str, Enum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)


@dataclass
class TrainerState:
    """The Trainer's situation and counters, in one place.

    Attributes:
        status: initializing, running, finished or interrupted.
        fn: the running entry point (fit/validate/test/predict), None between runs.
        stage: the running loop, None between runs.
        current_epoch: epochs completed (the epoch being trained while inside one).
        global_step: optimizer steps taken, over all epochs.
        batches_that_stepped: training batches that ended an accumulation window; the step loggers see.
        should_stop: set by callbacks or the module to end fit after the current batch/epoch.
    """

    status: TrainerStatus = TrainerStatus.INITIALIZING  # Lightning's field order: status, fn, stage
    fn: TrainerFn | None = None
    stage: RunningStage | None = None
    current_epoch: int = 0
    global_step: int = 0
    batches_that_stepped: int = 0
    should_stop: bool = False

    @property
    def finished(self) -> bool:
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status.stopped

    def optimizer_stepped(self) -> None:
        """Count one optimizer step: the one place `global_step` grows (automatic steps and manual `opt.step()`)."""
        self.global_step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"current_epoch": self.current_epoch, "global_step": self.global_step,
                "batches_that_stepped": self.batches_that_stepped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current_epoch = int(state.get("current_epoch", 0))
        self.global_step = int(state.get("global_step", 0))
        self.batches_that_stepped = int(state.get("batches_that_stepped", 0))


def logging_due(batches_that_stepped: int, log_every_n_steps: int, should_stop: bool) -> bool:
    """Whether step values logged now reach the loggers (`trainer.log_every_n_steps`; 0 turns step logging off).

    Lightning counts the batch being run (`batches_that_stepped + 1`: the counter moves only after its values
    are sent), so the LR monitor's `on_train_batch_start` gets the same answer as the logging after the batch;
    a stopping run logs its last step.
    """
    return bool(log_every_n_steps) and ((batches_that_stepped + 1) % log_every_n_steps == 0 or should_stop)
