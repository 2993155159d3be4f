"""AdvancedProfiler: a `cProfile` profile per action, reported with `pstats` (cumulative time)."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
from collections import defaultdict
from pathlib import Path
from typing import Any

from fulmen.profilers.profiler import Profiler


class AdvancedProfiler(Profiler):
    """Profiles every function call inside each action with `cProfile`; one `pstats` listing per action.

    Args:
        dirpath, filename: where the report goes (see `Profiler`).
        line_count_restriction: how many functions each action lists: an int (a count) or a float in [0.0, 1.0]
            (a fraction of them).
        dump_stats: also write each action's raw profile to `{dirpath}/{stage}-{filename}-{action}.prof` (open it
            with `pstats` or snakeviz); needs `dirpath` (or a Trainer's log dir).

    `stop` of an action never started raises `ValueError`.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None,
                 line_count_restriction: float = 1.0, dump_stats: bool = False) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.profiled_actions: dict[str, cProfile.Profile] = defaultdict(cProfile.Profile)
        self.line_count_restriction = line_count_restriction
        self.dump_stats = dump_stats

    def start(self, action_name: str) -> None:
        # Only one cProfile can be active at a time: the enclosing action pauses while a nested one runs (Lightning).
        for profile in self.profiled_actions.values():
            profile.disable()
        self.profiled_actions[action_name].enable()

    def stop(self, action_name: str) -> None:
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        profile.disable()

    def summary(self) -> str:
        listings = {}
        for action_name, profile in self.profiled_actions.items():
            if self.dump_stats:
                self._write_raw(action_name, profile)
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text).strip_dirs().sort_stats("cumulative")
            stats.print_stats(self.line_count_restriction)
            listings[action_name] = text.getvalue()
        return self._stats_to_str(listings)

    def _write_raw(self, action_name: str, profile: cProfile.Profile) -> None:
        if not self.dirpath:
            raise ValueError("`AdvancedProfiler(dump_stats=True)` needs a directory for the .prof files: pass "
                             "`dirpath=`, or run it in a Trainer (its log dir is used).")
        os.makedirs(self.dirpath, exist_ok=True)
        profile.dump_stats(os.path.join(self.dirpath, self._prepare_filename(action_name=action_name,
                                                                             extension=".prof")))

    def teardown(self, stage: str | None) -> None:
        super().teardown(stage=stage)
        self.profiled_actions.clear()

    def __reduce__(self) -> tuple[Any, ...]:
        # cProfile objects cannot be pickled (ddp_spawn sends the Trainer to its processes): rebuild from settings.
        return (self.__class__, (), {"dirpath": self.dirpath, "filename": self.filename,
                                     "line_count_restriction": self.line_count_restriction,
                                     "dump_stats": self.dump_stats})
