"""PassThroughProfiler: the Trainer's profiler when none is asked for; records nothing."""

from __future__ import annotations

from fulmen.profilers.profiler import Profiler


class PassThroughProfiler(Profiler):
    """Records nothing. The Trainer uses it when `profiler=None`, and then does not wrap hooks or steps at all."""

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass
