"""Graceful stop on SIGTERM/SIGINT: what cluster schedulers send before pre-empting a job.

Owns: installing and removing the handlers during fit, and remembering which signal arrived. The fit
loop polls `received` after each step, saves a resumable checkpoint and stops; a second Ctrl+C
interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class GracefulStop:
    """Turns SIGTERM and SIGINT into a request to stop after the current step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            return  # Python only delivers signals to the main thread
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self.received = signum
        rank_zero_info(f"Received {signal.Signals(signum).name}: finishing the current step, then saving a "
                       "checkpoint to resume from.")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, the shell's convention for "ended by a signal"."""
        return 128 + int(self.received or 0)


# With several processes every rank must stop at the same step, so they vote this often (a collective).
_SIGNAL_CHECK_EVERY = 10


def stop_agreed(trainer: Trainer) -> bool:
    """Whether fit should stop for SIGTERM/SIGINT after this step."""
    received = trainer._signals.received is not None
    if trainer.world_size == 1:
        return received
    if trainer.global_step % _SIGNAL_CHECK_EVERY:
        return False
    return trainer.strategy.reduce_boolean_decision(received, all=False)


def save_and_stop(trainer: Trainer) -> None:
    """Write the resumable checkpoint, say where, and make fit stop cleanly."""
    path = trainer._signal_checkpoint_path()
    trainer._checkpointing.freeze_loop_state(trainer._current)
    trainer.save_checkpoint(path)
    rank_zero_info(f"Saved a checkpoint to resume from: {path}  (resume with `trainer.fit(..., ckpt_path=...)`)")
    trainer._state.should_stop = True
