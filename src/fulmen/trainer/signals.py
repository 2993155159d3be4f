"""Graceful stop on SIGTERM/SIGINT: what cluster schedulers send before pre-empting a job.

Owns: installing and removing the handlers during fit, and remembering which signal arrived. The fit
loop asks `SignalStop` after each optimizer step, which saves a resumable checkpoint and stops; a
second Ctrl+C interrupts at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable

from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy
    from fulmen.trainer.state import TrainerState


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

    def exit(self) -> None:
        """End the process as the signal asked: `SIGTERMException` (a `SystemExit`, as Lightning raises after
        SIGTERM) for SIGTERM, a plain `SystemExit` for SIGINT; either carries `exit_code`."""
        if self.received == signal.SIGTERM:
            from fulmen.utilities.exceptions import SIGTERMException

            raise SIGTERMException(self.exit_code)
        sys.exit(self.exit_code)


# With several processes every rank must stop at the same step, so they vote this often (a collective).
_SIGNAL_CHECK_EVERY = 10


class SignalStop:
    """What the fit loop asks after each optimizer step: stop for SIGTERM/SIGINT? and if so, save and stop.

    Args:
        signals: the handlers' record of which signal arrived.
        strategy: the world size, and the collective with which the ranks agree.
        state: `global_step` (when the ranks vote) and `should_stop` (set once the checkpoint is written).
        save: writes the resumable checkpoint (freezing the loop's position first) and returns its path.
    """

    def __init__(self, signals: GracefulStop, strategy: Strategy, state: TrainerState, save: Callable[[], str]) -> None:
        self.signals = signals
        self.strategy = strategy
        self.state = state
        self.save = save

    def agreed(self) -> bool:
        """Whether fit should stop for SIGTERM/SIGINT after this step."""
        received = self.signals.received is not None
        strategy = self.strategy
        if strategy.world_size == 1:
            return received
        if self.state.global_step % _SIGNAL_CHECK_EVERY:
            return False
        return strategy.reduce_boolean_decision(received, all=False)

    def save_and_stop(self) -> None:
        """Write the resumable checkpoint, say where, and make fit stop cleanly."""
        path = self.save()
        rank_zero_info(f"Saved a checkpoint to resume from: {path}  (resume with `trainer.fit(..., ckpt_path=...)`)")
        self.state.should_stop = True
