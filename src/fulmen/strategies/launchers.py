"""How the processes of a multi-process run start.

`SubprocessScriptLauncher` (strategy "ddp") re-runs the user's script for the other local ranks and
watches them: if one dies, every process of the job is ended promptly. `MultiprocessingLauncher`
("ddp_spawn") runs the trainer function in spawned processes and hands results back to the caller.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch

from fulmen.strategies.cluster_environments import find_free_port

if TYPE_CHECKING:
    from fulmen.strategies.process_group import ProcessGroupStrategy

_POLL_SECONDS = 0.2
_DIVERGENCE_EXIT_CODE = 3  # fulmen.debug.divergence.EXIT_CODE (not imported: nothing here may load fulmen.debug)


class SpawnResults(NamedTuple):
    """How a spawned run's outcome reaches the launching process (given by the Trainer).

    Attributes:
        package: in each spawned process, after the run: what to send back (rank 0), or None (other ranks).
        restore: in the launching process: apply what rank 0 sent (weights, counters, metrics, best path).
    """

    package: Callable[[Any], dict[str, Any] | None]
    restore: Callable[[dict[str, Any]], None]


class SubprocessScriptLauncher:
    """Start local ranks 1..N-1 as copies of this script; this process continues as local rank 0."""

    is_interactive_compatible = False

    def __init__(self, strategy: ProcessGroupStrategy) -> None:
        self.strategy = strategy
        self.procs: list[subprocess.Popen] = []

    def launch(self, function: Callable, *args: Any, results: SpawnResults | None = None, **kwargs: Any) -> Any:
        """Start the other ranks (once), then run `function` here as local rank 0.

        `results` is not used: every process runs `function` itself, so nothing needs to travel back.
        """
        if not self.procs:
            self._start_children()
        return function(*args, **kwargs)

    def _start_children(self) -> None:
        strategy = self.strategy
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(find_free_port()))
        os.environ["NODE_RANK"] = str(strategy.node_rank)
        os.environ["WORLD_SIZE"] = str(strategy.world_size)
        command = _script_command()
        for local_rank in range(1, strategy.num_processes):
            env = dict(os.environ, LOCAL_RANK=str(local_rank))
            # Children share our stdout/stderr, so their tracebacks reach the user directly.
            self.procs.append(subprocess.Popen(command, env=env))
        os.environ["LOCAL_RANK"] = "0"
        threading.Thread(target=self._watch, name="fulmen-ddp-watchdog", daemon=True).start()

    def _watch(self) -> None:
        """End the whole job as soon as a child fails; a rank blocked in a collective would otherwise hang."""
        diverged_at = None
        while self.procs:
            for local_rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code not in (None, 0):
                    detector = self.strategy._divergence
                    if code == _DIVERGENCE_EXIT_CODE and detector is not None:
                        # The divergence detector of this rank prints the report and ends the job; wait for it.
                        diverged_at = diverged_at or time.monotonic()
                        if time.monotonic() - diverged_at < 15:
                            continue
                    summary = detector.raised_summary() if detector is not None else None
                    sys.stderr.write(summary or f"\nfulmen: the process with local rank {local_rank} exited with "
                                     f"code {code}; stopping all processes of this job.\n")
                    sys.stderr.flush()
                    self.kill(signal.SIGKILL)
                    os._exit(code if code > 0 else 1)
            if all(proc.poll() == 0 for proc in self.procs):
                return
            time.sleep(_POLL_SECONDS)

    def kill(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` to every child (used when this rank fails or is interrupted)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass


def _script_command() -> list[str]:
    """How this program was started: `python script.py args` or `python -m package.module args`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in (None, "__main__"):
        return [sys.executable, "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    script = os.path.abspath(sys.argv[0])
    if not os.path.isfile(script):
        raise RuntimeError(
            "strategy='ddp' re-runs your script for the other processes, but this program was not started from a "
            "script file (interactive session or notebook?). Use strategy='ddp_spawn', or run a script."
        )
    return [sys.executable, script, *sys.argv[1:]]


def _own_copies(module: torch.nn.Module) -> None:
    """Give this process private parameters and buffers.

    torch.multiprocessing passes CPU tensors to spawned processes through shared memory, so without
    this every rank's optimizer would update the same weights.
    """
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.data = parameter.data.clone()
        for submodule in module.modules():
            for name, buffer in submodule._buffers.items():
                if buffer is not None:
                    submodule._buffers[name] = buffer.clone()


class MultiprocessingLauncher:
    """Run the trainer function in N spawned processes; rank 0's results come back to this process."""

    is_interactive_compatible = False

    def __init__(self, strategy: ProcessGroupStrategy, start_method: str = "spawn") -> None:
        self.strategy = strategy
        self.start_method = start_method

    def launch(self, function: Callable, *args: Any, results: SpawnResults, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` in every process; return rank 0's return value.

        `results` says what rank 0 sends back and how this process takes it (Lightning's ddp_spawn contract:
        the caller's trainer and model end up as rank 0 left them).
        """
        import torch.multiprocessing as mp

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(find_free_port())
        context = mp.get_context(self.start_method)
        queue = context.SimpleQueue()
        try:
            mp.start_processes(_spawned_entry, args=(results.package, function, args, kwargs, queue),
                               nprocs=self.strategy.num_processes, start_method=self.start_method)
        except mp.ProcessExitedException as error:
            if error.exit_code != _DIVERGENCE_EXIT_CODE:
                raise
            from fulmen.debug.divergence import DivergenceError

            raise DivergenceError(f"The processes of this run diverged (process {error.error_index} exited with "
                                  f"code {error.exit_code}): see the divergence report printed above.") from None
        output = torch.load(io.BytesIO(queue.get()), weights_only=False)  # our own child's bytes
        results.restore(output)
        return output["results"]


def _spawned_entry(local_rank: int, package: Callable, function: Callable, args: tuple, kwargs: dict,
                   queue: Any) -> None:
    os.environ["LOCAL_RANK"] = str(local_rank)
    _own_copies(args[1])
    payload = package(function(*args, **kwargs))
    if payload is not None:
        # Plain bytes: tensors sent through the queue would refer to this process's shared memory, which
        # is gone by the time the parent reads them.
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        queue.put(buffer.getvalue())
    _wait_for_peers()
    # End without the interpreter's exit-time teardown: C++ threads of the process group or the store, left to
    # static destructors, can abort a finished rank ("terminate called without an active exception", SIGABRT)
    # and fail a run that succeeded. Everything this rank owes the parent is already written to the queue's pipe.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _wait_for_peers() -> None:
    """Wait until every rank is done, so none ends its connections while a peer still uses them."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
