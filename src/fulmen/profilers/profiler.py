"""Profiler: the base every profiler derives from — actions, the report, and where the report goes."""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, TextIO

log = logging.getLogger(__name__)


class Profiler(ABC):
    """Times named actions of a run; subclass it (with `start` and `stop`) to write your own profiler.

    The Trainer calls `setup` before each stage, times hooks and loop steps with `start(action)`/`stop(action)`
    (what `profile(action)` does as a context manager), and calls `describe` when the stage ends.

    Args:
        dirpath: directory for the report file; when None and `filename` is set, the Trainer's `log_dir`.
        filename: the report goes to `{dirpath}/{stage}-{filename}.txt` (with `-{local_rank}` before `.txt` when
            several processes run); when None the report is logged on local rank 0 instead.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None) -> None:
        self.dirpath = dirpath
        self.filename = filename
        self._output_file: TextIO | None = None
        self._write_stream: Callable[[str], Any] | None = None
        self._local_rank: int | None = None
        self._stage: str | None = None

    @abstractmethod
    def start(self, action_name: str) -> None:
        """Begin timing `action_name`."""

    @abstractmethod
    def stop(self, action_name: str) -> None:
        """End timing `action_name` (begun by `start`)."""

    def summary(self) -> str:
        """The report as text ('' when there is nothing to report)."""
        return ""

    @contextmanager
    def profile(self, action_name: str) -> Generator[str, None, None]:
        """`with profiler.profile("load data"): ...` times the block as `action_name`, also when it raises."""
        try:
            self.start(action_name)
            yield action_name
        finally:
            self.stop(action_name)

    @property
    def local_rank(self) -> int:
        return 0 if self._local_rank is None else self._local_rank

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        """Before a stage runs: its name, this process's local rank (None with one process), the default dirpath."""
        self._stage = getattr(stage, "value", stage)
        self._local_rank = local_rank
        self.dirpath = self.dirpath or log_dir

    def teardown(self, stage: str | None) -> None:
        """Close the report file, if one is open."""
        self._write_stream = None
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None  # an open file cannot be pickled (spawned processes get a copy)

    def describe(self) -> None:
        """Write the report (`summary()`) to the file or the log, then close the file."""
        self._open_stream()  # also works for a profiler used without a Trainer
        report = self.summary()
        if report and self._write_stream is not None:
            self._write_stream(report)
        if self._output_file is not None:
            self._output_file.flush()
        self.teardown(stage=self._stage)

    def __del__(self) -> None:
        try:
            self.teardown(stage=self._stage)
        except Exception:  # interpreter shutdown: nothing left to close cleanly
            pass

    # -- helpers for subclasses ---------------------------------------------------------------------

    def _prepare_filename(self, action_name: str | None = None, extension: str = ".txt") -> str:
        """`{stage}-{filename}-{local_rank}-{action_name}{extension}`, leaving out the parts that are unset."""
        parts = [str(part) for part in (self._stage, self.filename or None, self._local_rank, action_name)
                 if part is not None]
        # Characters that are not allowed in file names on some platforms become "_" (as Lightning does).
        base = re.sub(r"_+", "_", re.sub(r"[\\/:*?\"<>|\n\r\t]", "_", "-".join(parts))).strip()
        return (base or "profile") + extension

    def _open_stream(self) -> None:
        if self._write_stream is not None:
            return
        if self.filename and self.dirpath:
            os.makedirs(self.dirpath, exist_ok=True)
            # Appended: every stage of a Trainer (and every describe) adds its report.
            self._output_file = open(os.path.join(self.dirpath, self._prepare_filename()), "a")  # noqa: SIM115
            self._write_stream = self._output_file.write
        else:
            self._write_stream = self._log_on_rank_zero

    def _log_on_rank_zero(self, *args: Any, **kwargs: Any) -> None:
        if self._local_rank in (None, 0):
            log.info(*args, **kwargs)

    def _stats_to_str(self, stats: dict[str, str]) -> str:
        """A report of per-action text blocks under `{STAGE} Profiler Report`."""
        lines = [(f"{self._stage.upper()} " if self._stage is not None else "") + "Profiler Report"]
        rank = f" rank: {self._local_rank}" if self._local_rank is not None else ""
        for action, text in stats.items():
            lines += [f"Profile stats for: {action}{rank}", text]
        return os.linesep.join(lines)
