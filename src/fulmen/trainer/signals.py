"""Graceful stop on SIGTERM/SIGINT: what cluster schedulers send before pre-empting a job.

Owns: installing and removing the handlers during fit, and remembering which signal arrived. The fit
loop polls `received` after each step, saves a resumable checkpoint and stops; a second Ctrl+C
interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from fulmen.utilities.rank_zero import rank_zero_info


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
