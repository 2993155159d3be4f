"""The divergence detector's watchdog thread: it publishes this rank's record when a rank raises the alarm, compares
the records (`divergence_report.decide`), and ends the process with the report. Nothing here runs per step."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from fulmen.debug import divergence_report as report

EXIT_CODE = 3  # every rank of a diverged job exits with it (a raising rank keeps its own error and exit code)
_HISTORY = 64  # collectives remembered per rank (a power of two: the ring index is `seq & (_HISTORY - 1)`)
_VERDICT = 1 << 40  # added to the alarm counter once a verdict exists, so one `add(alarm, 0)` reads both


class Watchdog:
    """The watchdog half of `DivergenceDetector` (which sets the attributes used here)."""

    store: Any
    rank: int
    world_size: int
    timeout: float
    poll: float
    grace: float

    # -- watchdog ------------------------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            while not self._stop.wait(self.poll):
                alarm = self.store.add("alarm", 0)
                if alarm >= _VERDICT:
                    self._conclude()
                    return
                waiting = self.error is not None or (self.since and time.monotonic() - self.since > self.grace) \
                    or self._main_thread_stuck()
                if alarm and not self._alarm_at:
                    self._alarm_at = time.time()
                if alarm or waiting:
                    self._publish(None)
                if waiting:
                    self._raised_alarm_once()
                    self._evaluate()
        except Exception as error:  # noqa: BLE001 - the store's host (rank 0) is gone
            if not self._stop.is_set():
                self._exit_without_store(error)

    def _main_thread_stuck(self) -> bool:
        """The main thread sat on one line, with no new collective, for longer than the timeout. With asynchronous
        collectives (NCCL) a rank paired with the wrong collective hangs later, at a host sync outside any collective
        call: the ranks are then compared too (only certain evidence ends the job; a long computation is harmless)."""
        frame = sys._current_frames().get(self._main)
        spot = (frame.f_code, frame.f_lineno, self.seq) if frame is not None else None
        now = time.monotonic()
        if spot != self._spot:
            self._spot, self._spot_since = spot, now
            return False
        return now - self._spot_since > self.timeout

    def _raised_alarm_once(self) -> None:
        if not getattr(self, "_alarmed", False):
            self._alarmed = True
            self._alarm(1)

    def _alarm(self, amount: int) -> None:
        self._alarm_at = time.time()
        self.store.add("alarm", amount)

    def _evaluate(self) -> None:
        records = self._records()
        settling = time.time() - self._alarm_at < max(3.0, 6 * self.poll)
        if settling and any(record["time"] < self._alarm_at and record["status"] != "raised"
                            for record in records.values()):
            return  # a rank has not answered the alarm yet: judge fresh records only (a silent one is judged later)
        decision = report.decide(records, self.rank, self.timeout, self.grace, time.time())
        if decision is None:
            return
        if decision.get("straggler") is not None:
            if not self._warned:
                self._warned = True
                sys.stderr.write(report.straggler_warning(decision, records, self.rank))
                sys.stderr.flush()
            return
        decision["records"] = records
        if self.store.compare_set("verdict", "", json.dumps(decision)) != b"":
            pass  # another rank decided first; its verdict stands
        self._alarm(_VERDICT)
        self._conclude()

    def _records(self) -> dict[int, dict[str, Any]]:
        records = {}
        for rank in range(self.world_size):
            key = f"rank{rank}"
            if self.store.check([key]):
                records[rank] = json.loads(self.store.get(key))
        return records

    def _publish(self, status: str | None) -> None:
        self._tick += 1
        record = self._record(status)
        self.store.set(f"rank{self.rank}", json.dumps(record))

    def _record(self, status: str | None) -> dict[str, Any]:
        now = time.monotonic()
        where, detail = "", ""
        if self.error is not None:
            error_status, detail, where = self.error
            status = status or error_status
        if status is None:
            if self.error is not None:
                pass
            elif self.finished:
                status = "finished"
            elif self.since:
                status = "collective"
            else:
                status, where = self._main_thread_state()
        wait = now - self.since if self.since else (now - self._comm_since[1] if status == "comm" and
                                                    self._comm_since else 0.0)
        state = self.state
        return {"rank": self.rank, "tick": self._tick, "time": time.time(), "status": status, "seq": self.seq,
                "wait": round(wait, 2), "where": where, "detail": detail, "pid": os.getpid(),
                "step": state.global_step, "epoch": state.current_epoch, "stage": report.stage_name(state.stage),
                "history": report.encode_history(self.history, self.seq, _HISTORY)}

    def _main_thread_state(self) -> tuple[str, str]:
        frame = sys._current_frames().get(self._main)
        status, where = report.classify_stack(frame)
        if status == "comm":
            if self._comm_since is None or self._comm_since[0] != where:
                self._comm_since = (where, time.monotonic())
        else:
            self._comm_since = None
        return status, where

    # -- the end -------------------------------------------------------------------------------------

    def _conclude(self) -> None:
        """A verdict exists: raising ranks are left to their own error; the others stop."""
        self._decided.set()
        raw = self.store.get("verdict")
        verdict = json.loads(raw) if raw else {"kind": "unknown"}
        self._verdict = verdict
        self.store.add(f"ack{self.rank}", 1)
        if verdict.get("kind") == "raised":
            if self.raised_here:
                return  # this rank's own error is on its way to the user
            self._publish(None)
            # Stay quiet: the raising rank's error must be the last, clearest lines. Its launcher ends us; if not,
            # leave after a while without adding noise.
            time.sleep(max(5.0, 2 * self.timeout / 3))
            _exit(1, "")
            return
        text = report.format_report(verdict, self.timeout)
        printer = report.printing_rank(verdict)
        others = [rank for rank in range(self.world_size) if rank != printer]
        if self.rank == printer:
            # The full report comes last on a shared terminal (after the other ranks' one line each), and this rank
            # leaves last: it may host the store the others still read.
            _wait_for_keys(self.store, [f"said{rank}" for rank in others], limit=3.0, poll=self.poll / 2)
            sys.stdout.flush()
            sys.stderr.write(text)
            sys.stderr.flush()
            self.store.set("printed", "1")
            _wait_for_keys(self.store, [f"bye{rank}" for rank in others], limit=3.0, poll=self.poll / 2)
            _exit(EXIT_CODE, "")
        sys.stderr.write(f"fulmen: rank {self.rank} stops: the DDP ranks diverged (report printed by rank "
                         f"{printer}).\n")
        sys.stderr.flush()
        self.store.set(f"said{self.rank}", "1")
        _wait_for_keys(self.store, ["printed"], limit=10.0, poll=self.poll / 2)
        self.store.set(f"bye{self.rank}", "1")
        _exit(EXIT_CODE, "")

    def raised_summary(self) -> str | None:
        """For the launcher: the last lines naming the rank that raised and its error, when one did."""
        verdict = self._verdict
        if verdict is None or verdict.get("kind") != "raised":
            return None
        try:
            records = self._records()
        except Exception:  # noqa: BLE001
            return None
        return report.raised_summary(records.get(verdict["rank"]))

    def _wait_for_watchdog(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(self.poll)

    def _wait_for_acks(self, limit: float) -> None:
        peers = [f"ack{rank}" for rank in range(self.world_size) if rank != self.rank]
        _wait_for_keys(self.store, peers, limit, self.poll / 2)

    def _exit_without_store(self, error: BaseException) -> None:
        if self._verdict is not None:
            return
        _exit(EXIT_CODE, f"\nfulmen: rank {self.rank} stops: the store of the process group (hosted by rank 0) is "
                         f"gone ({report.one_line(error)}): rank 0 ended unexpectedly.\n")


def _wait_for_keys(store: Any, keys: list[str], limit: float, poll: float) -> None:
    deadline = time.monotonic() + limit
    try:
        while keys and time.monotonic() < deadline and not store.check(keys):
            time.sleep(poll)
    except Exception:  # noqa: BLE001 - the store's host ended: stop waiting
        pass


def _exit(code: int, text: str) -> None:
    sys.stdout.flush()
    if text:
        sys.stderr.write(text)
    sys.stderr.flush()
    os._exit(code)
