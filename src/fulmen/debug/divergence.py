"""DDP divergence detector: every collective fulmen issues carries a per-rank sequence number and call site, and a
watchdog thread per rank ends a diverged job on every rank with a report instead of a hang.

The hot path only numbers the collective and remembers where it was called (a frame walk and a tuple in a ring,
no store traffic, no extra collective). Ranks talk through the process group's key-value store, off the main thread:
in steady state one `add(alarm, 0)` per rank every poll interval. When a rank waits in a collective longer than a
short grace, fails inside one, raises, or ends its run, it raises the alarm; every rank then publishes its record
(recent collectives, what its main thread is doing, the step) and the records are compared
(`divergence_report.decide`). Because collective #N is a fact once made, two ranks with different call sites at the
same #N have diverged for certain, on any backend: that is reported at once. A rank that is slow but still running
is waited for (with one warning), never killed. Single-process runs never build a detector.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from fulmen.debug import divergence_report as report
from fulmen.debug.divergence_watchdog import _HISTORY, _VERDICT, EXIT_CODE, Watchdog, _wait_for_keys  # noqa: F401

ENV_VAR = "FULMEN_DIVERGENCE_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
_PLUMBING = tuple(os.path.join(os.path.dirname(os.path.dirname(__file__)), part) + os.sep
                  for part in ("strategies", "results", "debug", "core", "utilities"))
_COLLECTIVES = ("reduce", "barrier", "broadcast", "all_gather", "reduce_boolean_decision")
_generation = 0  # runs watched by this process: every rank makes the same runs, so it names each run's keys alike


class DivergenceError(RuntimeError):
    """The ranks of a multi-process run stopped making the same collectives (raised in the launching process)."""


def resolve_timeout(value: Any, source: str = "DDPStrategy(divergence_timeout=...)") -> float | None:
    """Seconds as a float, or None for "off" (0). `value` None means: the environment variable, else the default."""
    if value is None:
        raw = os.environ.get(ENV_VAR, "").strip()
        if not raw:
            return DEFAULT_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{ENV_VAR}={raw!r} is not a number: set it to the seconds a rank may wait for the "
                             f"others in a collective (e.g. 30), or 0 to turn the divergence detector off.") from None
        source = ENV_VAR
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0 \
            or math.isinf(value):
        raise ValueError(f"{source} got {value!r}: pass the seconds (a number > 0, or a timedelta) a rank may wait "
                         "for the others in a collective before the ranks are compared, or 0 to turn the divergence "
                         f"detector off (default {DEFAULT_TIMEOUT:g}).")
    return float(value) if value > 0 else None


def start(strategy: Any, state: Any, timeout: float) -> DivergenceDetector | None:
    """Watch `strategy`'s collectives for this run; None when there is no process group or store to talk through."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    store = _private_store()
    if store is None:
        return None
    global _generation
    _generation += 1
    # torchrun's agent keeps its store across restarts of the workers: a restart gets keys of its own.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    detector = DivergenceDetector(dist.PrefixStore(f"fulmen/divergence/{attempt}/{_generation}/", store),
                                  dist.get_rank(),
                                  dist.get_world_size(), timeout, state)
    detector.install(strategy)
    return detector


def _private_store() -> Any:
    """A connection of our own to the process group's store (the watchdog never shares the main thread's socket)."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d

    store = c10d._get_default_store()
    underlying = store
    while hasattr(underlying, "underlying_store"):
        underlying = underlying.underlying_store
    if isinstance(underlying, dist.TCPStore):
        try:
            return dist.TCPStore(underlying.host, underlying.port, is_master=False, timeout=timedelta(seconds=30))
        except Exception:  # noqa: BLE001 - fall back to the shared client, which is thread-safe
            return underlying
    return underlying


class DivergenceDetector(Watchdog):
    """Per-rank collective numbering (hot path) plus the watchdog thread that compares ranks when one is stuck."""

    def __init__(self, store: Any, rank: int, world_size: int, timeout: float, state: Any) -> None:
        self.store, self.rank, self.world_size, self.timeout, self.state = store, rank, world_size, timeout, state
        self.poll = min(0.5, max(0.05, timeout / 20))
        self.grace = min(timeout, max(1.0, 4 * self.poll))
        self.seq = 0
        self.bits = max(4, min(20, (52 - world_size.bit_length()) // 2))  # in-band check numbers stay exact in float64
        self._sites: dict[tuple, int] = {}
        self.since = 0.0  # monotonic time the main thread entered the current collective; 0 when in none
        self.history: list[Any] = [None] * _HISTORY
        self.error: tuple[str, str, str] | None = None  # (status, error text, where) once the main thread failed
        self.finished = False
        self.raised_here = False
        self._originals: dict[str, Any] = {}
        self._strategy: Any = None
        self._stop = threading.Event()
        self._decided = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name="fulmen-divergence-watchdog", daemon=True)
        self._verdict: dict[str, Any] | None = None
        self._comm_since: tuple[str, float] | None = None
        self._warned = False
        self._tick = 0
        self._alarm_at = 0.0
        self._spot: Any = None
        self._spot_since = 0.0

    # -- hot path ----------------------------------------------------------------------------------

    def install(self, strategy: Any) -> None:
        """Replace `strategy`'s collective methods (instance attributes) by numbered ones; start the watchdog."""
        from fulmen.debug.divergence_collectives import checked_methods

        self._strategy = strategy
        # In-band checks on CPU (gloo pairs mismatched collectives silently or aborts); on GPUs the messages stay
        # as they are (no host sync per collective) and the watchdog alone compares the ranks.
        checked = checked_methods(strategy, self.bits) if strategy.root_device.type == "cpu" else {}
        for name in _COLLECTIVES:
            original = getattr(strategy, name)
            self._originals[name] = original
            setattr(strategy, name, self._numbered(name, original, checked.get(name)))
        self._publish("running")
        self._thread.start()

    def _numbered(self, op: str, original: Any, checked: Any) -> Any:
        detector, state, history, mask = self, self.state, self.history, _HISTORY - 1
        getframe, monotonic, plumbing = sys._getframe, time.monotonic, _PLUMBING
        sites, seq_mask = self._sites, (1 << self.bits) - 1

        def numbered(*args: Any, **kwargs: Any) -> Any:
            frame = caller = getframe(1)
            while caller is not None and caller.f_code.co_filename.startswith(plumbing):
                caller = caller.f_back
            caller = caller or frame  # called from fulmen's own plumbing only: name that place
            code, line = caller.f_code, caller.f_lineno
            seq = detector.seq = detector.seq + 1
            history[seq & mask] = (seq, op, code, line, state.global_step, state.current_epoch, state.stage)
            detector.since = monotonic()
            if checked is None:
                result = original(*args, **kwargs)
            else:
                site = sites.get((code, line, op)) or detector._site_number(op, code, line)
                result, agreed = checked(site, (seq & seq_mask) + 1, *args, **kwargs)
                if not agreed:
                    detector._disagreed(seq)
            detector.since = 0.0
            return result

        return numbered

    def _site_number(self, op: str, code: Any, line: int) -> int:
        from fulmen.debug.divergence_collectives import site_number

        number = self._sites[(code, line, op)] = site_number(op, code, line, self.bits)
        return number

    def _disagreed(self, seq: int) -> None:
        """The in-band check of collective #seq failed: the ranks paired different collectives."""
        self.error = ("comm_error", f"collective #{seq} paired with a different collective on another rank", "")
        self._alarm(1)
        self._wait_for_watchdog(limit=self.timeout + 10)
        raise RuntimeError(f"fulmen: collective #{seq} on rank {self.rank} was paired with a different collective "
                           "on another rank (the ranks diverged), and the ranks could not be compared.")

    # -- lifecycle -----------------------------------------------------------------------------------

    def finish(self) -> None:
        """The run ended on this rank: wait until every rank ended it after the same collectives (a store-based
        end-of-run point, numbered like a collective, so a rank that ends while others still wait is reported)."""
        seq = self.seq = self.seq + 1
        frame = sys._getframe(2)  # the Trainer's line that ends the run
        self.history[seq & (_HISTORY - 1)] = (seq, "end of run", frame.f_code, frame.f_lineno,
                                              self.state.global_step, self.state.current_epoch, self.state.stage)
        self.since = time.monotonic()
        if self.store.add("ended", 1) == self.world_size:
            self.store.set("all_ended", "1")
        # Polled, not `store.wait`: the watchdog shares this connection and must keep talking (a divergence ends
        # this process from there).
        pause = 0.001
        while not self.store.check(["all_ended"]):
            time.sleep(pause)
            pause = min(self.poll, 2 * pause)
        self.since = 0.0
        self.finished = True
        self._leave()

    def _leave(self) -> None:
        """After the run's end: stop the watchdog, and let rank 0, whose process hosts the store, leave it last. A
        process that exits while a thread of its own, or a peer, is inside a store call can abort ("terminate called
        without an active exception") after a run that succeeded."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self.poll + 1)
        if self.rank != 0:
            try:
                self.store.set(f"left{self.rank}", "1")
            except Exception:  # noqa: BLE001 - rank 0 (the store's host) is gone already: nothing to tell it
                pass
        else:
            _wait_for_keys(self.store, [f"left{rank}" for rank in range(1, self.world_size)],
                           limit=max(5.0, self.grace), poll=self.poll / 2)

    def stop(self) -> None:
        """Restore the strategy's methods and end the watchdog (teardown)."""
        self._stop.set()
        strategy = self._strategy
        for name in self._originals:
            strategy.__dict__.pop(name, None)
        self._originals = {}
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * self.poll + 1)

    def on_exception(self, error: BaseException) -> None:
        """The run failed on this rank (called by the Trainer before its own handling).

        A failure inside a collective, or a communication error, is a symptom: the ranks are compared and the job
        ends with the report (this does not return). Any other error is the cause: it is published so the other
        ranks stop quietly, and then propagates as usual, so the original error is what the user sees last.
        """
        if not isinstance(error, Exception) or self._stop.is_set():
            self.stop()
            return
        where = report.error_location(error)
        if self._decided.is_set():  # a verdict exists (another rank raised or diverged): the watchdog ends us
            self._wait_for_watchdog(limit=self.timeout + 10)
            return
        if report.is_communication_error(error) or self.since:
            self.error = ("comm_error", report.one_line(error), where)
            try:
                self._alarm(1)
            except Exception:  # noqa: BLE001 - the store is gone with its host: the watchdog says so
                pass
            self._wait_for_watchdog(limit=self.timeout + 10)
            return  # no verdict came: let the original error propagate
        self.raised_here = True
        self.error = ("raised", report.one_line(error), where)
        try:
            self._publish("raised")
            self.store.compare_set("verdict", "", json.dumps({"kind": "raised", "rank": self.rank}))
            self._alarm(_VERDICT)
            self._wait_for_acks(limit=max(2.0, 4 * self.poll))
        except Exception:  # noqa: BLE001 - the store is gone: the error below still says everything
            pass
        self.stop()
