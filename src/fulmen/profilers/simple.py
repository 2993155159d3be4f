"""SimpleProfiler: wall-clock time of every action — calls, mean, total and share of the run."""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from pathlib import Path

from fulmen.profilers.profiler import Profiler


class SimpleProfiler(Profiler):
    """Times each action with `time.perf_counter` and reports them in a table, slowest first.

    Args:
        dirpath, filename: where the report goes (see `Profiler`).
        extended: add the number of calls and each action's percentage of the time since the profiler was made;
            rows are then sorted by total time (otherwise by mean duration).

    `start` of an action already running, and `stop` of one not running, raise `ValueError`.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None, extended: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.extended = extended
        self.start_time = time.perf_counter()

    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"Attempted to start {action_name} which has already started.")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        now = time.perf_counter()
        started = self.current_actions.pop(action_name, None)
        if started is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        self.recorded_durations[action_name].append(now - started)

    def summary(self) -> str:
        sep = os.linesep
        title = (f"{self._stage.upper()} " if self._stage is not None else "") + f"Profiler Report{sep}"
        if not self.recorded_durations:
            return title + sep
        width = max(len(action) for action in self.recorded_durations)
        totals = {action: math.fsum(durations) for action, durations in self.recorded_durations.items()}

        def row(*cells: str) -> str:
            # Tab-separated cells, as in Lightning's report (the line of dashes is measured with tabs expanded).
            return sep + f"|  {cells[0]:<{width}s}\t|" + "".join(f"  {cell:<15}\t|" for cell in cells[1:])

        if self.extended:
            header = row("Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %")
            elapsed = time.perf_counter() - self.start_time
            rows = sorted(((action, total / len(self.recorded_durations[action]), len(self.recorded_durations[action]),
                            total, 100.0 * total / elapsed) for action, total in totals.items()),
                          key=lambda entry: entry[4], reverse=True)
            first = [row("Total", "-", f"{sum(entry[2] for entry in rows)}", f"{elapsed:.5}", "100 %")]
            body = [row(action, f"{mean:.5}", f"{calls}", f"{total:.5}", f"{share:.5}")
                    for action, mean, calls, total, share in rows]
        else:
            header = row("Action", "Mean duration (s)", "Total time (s)")
            rows = sorted(((action, total / len(self.recorded_durations[action]), total)
                           for action, total in totals.items()), key=lambda entry: entry[1], reverse=True)
            first = []
            body = [row(action, f"{mean:.5}", f"{total:.5}") for action, mean, total in rows]
        line = sep + "-" * len(header.expandtabs())
        parts = [title, line, header, line]
        if first:
            parts += [*first, line]
        return "".join(parts + body + [line, sep])
