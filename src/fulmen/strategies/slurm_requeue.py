"""SLURM auto-requeue (Lightning's): when SLURM signals that the job's time is nearly up, save a checkpoint
and put the job back in the queue; the requeued run resumes from that checkpoint.

Owns: the requeue signal handler during fit (installed when the run's cluster environment is a
`SLURMEnvironment(auto_requeue=True)`), the `hpc_ckpt_<n>.ckpt` names in `default_root_dir`, and finding the
newest one to resume from.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

_HPC_NAME = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")


def _hpc_numbers(directory: str | os.PathLike) -> list[int]:
    if not os.path.isdir(directory):
        return []
    return [int(match.group(1)) for match in map(_HPC_NAME.match, os.listdir(directory)) if match]


def hpc_save_path(directory: str | os.PathLike) -> str:
    """`hpc_ckpt_<n>.ckpt` in `directory`, numbered one past the highest already there (from 1)."""
    return os.path.join(directory, f"hpc_ckpt_{max(_hpc_numbers(directory), default=0) + 1}.ckpt")


def hpc_resume_path(directory: str | os.PathLike) -> str | None:
    """The highest-numbered `hpc_ckpt_<n>.ckpt` in `directory`, or None."""
    numbers = _hpc_numbers(directory)
    return os.path.join(directory, f"hpc_ckpt_{max(numbers)}.ckpt") if numbers else None


def slurm_job_id() -> str:
    """The id `scontrol requeue` takes: `<array job>_<task>` in an array job, else SLURM_JOB_ID."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    if not re.fullmatch(r"[0-9_]+", job_id):
        raise ValueError(f"SLURM job id {job_id!r} is not a number; cannot requeue it.")
    return job_id


class SLURMRequeue:
    """The requeue signal handler for one fit.

    Args:
        trainer: saves the checkpoint (`save_checkpoint`), knows `default_root_dir`, the loggers and the rank.
        requeue_signal: the signal to handle (the environment's `requeue_signal`).
    """

    def __init__(self, trainer: Any, requeue_signal: signal.Signals) -> None:
        self._trainer = trainer
        self._signal = requeue_signal
        self._previous: Any = None
        self._installed = False

    @classmethod
    def for_trainer(cls, trainer: Any) -> SLURMRequeue | None:
        """A handler if the trainer's cluster environment asks for auto-requeue, else None."""
        from fulmen.strategies.cluster_environments import SLURMEnvironment

        # The strategy's (multi-process), or the one passed in `plugins` (a single-device run keeps none).
        environment = getattr(trainer.strategy, "cluster_environment", None) or trainer._plugin_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            return cls(trainer, environment.requeue_signal)
        return None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python only delivers signals to the main thread
        self._previous = signal.signal(self._signal, self._handle)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(self._signal, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        trainer = self._trainer
        rank_zero_info(f"Handling auto-requeue signal: {signal.Signals(signum).name}")
        for logger in trainer.loggers:  # Lightning finalizes the loggers so every metric is on disk
            logger.finalize("finished")
        # Every rank gets the signal and joins the save (it ends with a barrier); rank 0 writes the file.
        path = trainer.strategy.broadcast(hpc_save_path(trainer.default_root_dir))
        trainer.save_checkpoint(path)
        if not trainer.is_global_zero:
            return
        job_id = slurm_job_id()
        try:
            result = subprocess.call(["scontrol", "requeue", job_id])
        except FileNotFoundError:
            rank_zero_warn(f"Could not requeue SLURM job {job_id}: `scontrol` is not on PATH.")
            return
        if result == 0:
            rank_zero_info(f"Requeued SLURM job {job_id}; it resumes from {path}.")
        else:
            rank_zero_warn(f"Requeuing SLURM job {job_id} failed: `scontrol requeue` exited with {result}.")
