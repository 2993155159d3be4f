"""Logger base class: the interface the Trainer sends hyperparameters and metrics to."""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from typing import Any, Callable

from fulmen.utilities.rank_zero import rank_zero_only


class Logger(ABC):
    """Base class for experiment loggers; only global rank zero writes."""

    @property
    @abstractmethod
    def name(self) -> str | None:
        """The experiment name."""

    @property
    @abstractmethod
    def version(self) -> int | str | None:
        """The experiment version."""

    @property
    def root_dir(self) -> str | None:
        """The directory holding all versions of this experiment."""
        return None

    @property
    def log_dir(self) -> str | None:
        """The directory this version writes to."""
        return None

    @property
    def save_dir(self) -> str | None:
        """The directory the logger was told to save under."""
        return None

    @property
    def group_separator(self) -> str:
        return "/"

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record `metrics` at `step`."""

    @abstractmethod
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model graph (loggers that support it)."""

    def save(self) -> None:
        """Flush what was logged."""

    def finalize(self, status: str) -> None:
        """Close the experiment; `status` is "success", "failed" or "finished"."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Called after a checkpoint is saved."""

    def run_identity(self) -> Any:
        """What names this logger's run once created (a version, run ids), for the other ranks to adopt; None if
        nothing is decided yet or nothing needs sharing."""
        return None

    def adopt_run_identity(self, identity: Any) -> None:
        """Use the run rank zero created (`identity` from its `run_identity()`)."""


def rank_zero_experiment(fn: Callable) -> Callable:
    """Return the real experiment on rank zero and a do-nothing stand-in elsewhere."""

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        if rank_zero_only.rank > 0:
            return _DummyExperiment()
        return fn(self)

    return experiment


class _DummyExperiment:
    """An experiment whose every method accepts anything and does nothing (`experiment.add_image(...)`)."""

    def __getattr__(self, _: str) -> Callable:
        return lambda *args, **kwargs: None

    def __getitem__(self, index: int) -> _DummyExperiment:
        return self

    def __setitem__(self, *args: Any) -> None:  # `experiment["key"] = value`, as Lightning's accepts
        pass


DummyExperiment = _DummyExperiment  # Lightning's public name


class DummyLogger(Logger):
    """A logger that accepts every call and records nothing: keeps user code that talks to `trainer.logger`
    (or `self.logger.experiment`) working where logging is switched off."""

    def __init__(self) -> None:
        self._experiment = _DummyExperiment()

    @property
    def experiment(self) -> _DummyExperiment:
        return self._experiment

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    def __getitem__(self, index: int) -> DummyLogger:
        return self  # `trainer.loggers[0]`-style code written against a list keeps working

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("__"):  # copy/pickle probe dunders; answering them would break copying
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> None:
            return None

        return method


def next_version(root_dir: str) -> int:
    """The next free `version_N` number under `root_dir`."""
    if not os.path.isdir(root_dir):
        return 0
    versions = []
    for entry in os.listdir(root_dir):
        if entry.startswith("version_") and os.path.isdir(os.path.join(root_dir, entry)):
            suffix = entry[len("version_"):]
            if suffix.isdigit():
                versions.append(int(suffix))
    return max(versions) + 1 if versions else 0


def claim_next_version(root_dir: str) -> int:
    """Create `root_dir/version_N` for the next free N and return N.

    `os.mkdir` fails if the directory exists, so two runs started at once in one directory can never
    both claim the same version (and overwrite each other's logs and checkpoints): the loser takes the next.
    """
    os.makedirs(root_dir, exist_ok=True)
    version = next_version(root_dir)
    while True:
        try:
            os.mkdir(os.path.join(root_dir, f"version_{version}"))
            return version
        except FileExistsError:
            version += 1


class VersionedDirectoryLogger(Logger):
    """A logger writing to `<save_dir>/<name>/version_N[/sub_dir]`, N the next free number (Lightning's layout)."""

    def __init__(self, save_dir: str | os.PathLike, name: str | None, version: int | str | None,
                 sub_dir: str | os.PathLike | None = None) -> None:
        from fulmen.checkpoint_io import local_path

        self._save_dir = local_path(save_dir, "write logs to", custom_io=False)
        self._name = name or ""
        self._version = version
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)

    def run_identity(self) -> Any:
        return self.version

    def adopt_run_identity(self, identity: Any) -> None:
        self._version = identity

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        if self._version is None:
            # Only the writing process (rank 0) claims a directory; others just name the same number.
            claim = claim_next_version if rank_zero_only.rank == 0 else next_version
            self._version = claim(self.root_dir)
        return self._version

    @property
    def root_dir(self) -> str:
        return os.path.join(self.save_dir, self.name)  # through the properties: a subclass may override them

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def sub_dir(self) -> str | None:
        return self._sub_dir

    @property
    def log_dir(self) -> str:
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        directory = os.path.join(self.root_dir, version)
        return os.path.join(directory, self._sub_dir) if self._sub_dir else directory
