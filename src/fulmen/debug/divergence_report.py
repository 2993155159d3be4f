"""The divergence detector's records and judgement: what each rank publishes, when the ranks have certainly
diverged (`decide`), and the report every rank exits with. Runs on the watchdog thread only, never per step."""

from __future__ import annotations

import linecache
import os
import traceback
from typing import Any

_FULMEN = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH_PARTS = (os.sep + "torch" + os.sep,)
# A main thread inside these waits on communication fulmen did not number (DDP's gradient sync runs in backward).
_COMM_PARTS = tuple(os.sep + os.path.join("torch", part) for part in ("distributed" + os.sep, "autograd" + os.sep,
                                                                     "_tensor.py"))
_COMM_WORDS = ("gloo", "nccl", "connection closed", "connection reset", "broken pipe", "processgroup", "c10d",
               "preamble", "timed out", "socket")


def stage_name(stage: Any) -> str:
    return getattr(stage, "value", None) or str(stage or "")


def _short(filename: str) -> str:
    if filename.startswith(_FULMEN):
        return "fulmen/" + filename[len(_FULMEN):]
    return os.path.basename(filename)


def encode_history(history: list[Any], seq: int, size: int) -> list[list[Any]]:
    """The remembered collectives, oldest first: `[seq, op, file, line, function, source, step, epoch, stage]`."""
    entries = []
    for number in range(max(1, seq - size + 1), seq + 1):
        entry = history[number & (size - 1)]
        if entry is None or entry[0] != number:
            continue
        _, op, code, line, step, epoch, stage = entry
        source = linecache.getline(code.co_filename, line).strip()
        entries.append([number, op, _short(code.co_filename), line, getattr(code, "co_qualname", code.co_name),
                        source, step, epoch, stage_name(stage)])
    return entries


def _site(entry: list[Any] | None) -> tuple | None:
    # The site compared across ranks: what was called, and from where (file names only: paths differ per node).
    return None if entry is None else (entry[1], os.path.basename(entry[2]), entry[3], entry[4])


def classify_stack(frame: Any) -> tuple[str, str]:
    """("comm", where) when the main thread waits inside torch.distributed or autograd (a collective fulmen did not
    number: DDP's gradient all-reduce, SyncBatchNorm, the user's own calls), else ("running", where)."""
    status, where = "running", ""
    while frame is not None:
        filename = frame.f_code.co_filename
        if any(part in filename for part in _COMM_PARTS):
            status = "comm"
        elif not any(part in filename for part in _TORCH_PARTS) and not where:
            where = f"{_short(filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return status, where


def is_communication_error(error: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(word in text for word in _COMM_WORDS)


def one_line(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    text = "".join(lines).strip().splitlines()
    return text[-1] if len(text) == 1 else " ".join(line.strip() for line in text)[:500]


def error_location(error: BaseException) -> str:
    """Where `error` was raised: the innermost frame outside torch and fulmen (the user's line), else the innermost."""
    frames = traceback.extract_tb(error.__traceback__)
    chosen = None
    for summary in frames:
        if not summary.filename.startswith(_FULMEN) and os.sep + "torch" + os.sep not in summary.filename:
            chosen = summary
    chosen = chosen or (frames[-1] if frames else None)
    if chosen is None:
        return ""
    return f"{_short(chosen.filename)}:{chosen.lineno} in {chosen.name}\n    {(chosen.line or '').strip()}"


# -- judgement --------------------------------------------------------------------------------------------------


def decide(records: dict[int, dict[str, Any]], me: int, timeout: float, grace: float, now: float
           ) -> dict[str, Any] | None:
    """A verdict (`{"kind": ..., "seq": ..., "diverging": [...]}`), a straggler note (`{"straggler": rank}`), or
    None while nothing is certain. Collective #N's call site is a fact once made, so differing sites are certain."""
    if any(record["status"] == "raised" for record in records.values()):
        return None  # the raising rank publishes its own verdict
    world = max(max(records) + 1, me + 1)
    mine = records.get(me)
    my_wait = mine["wait"] if mine else 0.0
    stale_after = max(10.0, 2 * timeout)
    dead = [rank for rank in range(world) if rank not in records or (
        records[rank]["status"] in ("running", "collective", "comm") and now - records[rank]["time"] > stale_after)]
    histories = {rank: {entry[0]: entry for entry in record["history"]} for rank, record in records.items()}
    first = _first_difference(records, histories)
    if first is not None:
        sites = {rank: _site(histories[rank].get(first)) for rank in records}
        present = {site for site in sites.values() if site is not None}
        behind = [rank for rank, site in sites.items() if site is None]
        if len(present) > 1:
            return _verdict("mismatch", first, sites, records)
        certain = [rank for rank in behind if records[rank]["status"] in ("finished", "comm_error") or rank in dead
                   or (records[rank]["status"] in ("collective", "comm") and records[rank]["wait"] >= timeout)]
        if certain:
            return _verdict("missing", first, sites, records)
        if my_wait >= timeout:
            return {"straggler": behind[0]}
        return None
    failed = [rank for rank, record in records.items() if record["status"] == "comm_error"]
    if dead and (failed or my_wait >= timeout):
        return _verdict("dead", None, {}, records, diverging=dead)
    if failed:
        return _verdict("failed", None, {}, records, diverging=failed)
    if my_wait >= timeout:
        waiting = [rank for rank, record in records.items() if record["status"] == "running"]
        if waiting:
            return {"straggler": waiting[0]}
        slow = [rank for rank, record in records.items() if record["wait"] < timeout]
        if not slow:
            others = [rank for rank, record in records.items() if record["status"] == "comm"]
            return _verdict("stuck", None, {}, records, diverging=others or sorted(records))
    return None


def _first_difference(records: dict[int, dict[str, Any]], histories: dict[int, dict[int, list]]) -> int | None:
    low = max((min(history) if history else 1) for history in histories.values())
    high = max(record["seq"] for record in records.values())
    for seq in range(low, high + 1):
        if len({_site(history.get(seq)) for history in histories.values()}) > 1:
            return seq
    return None


def _verdict(kind: str, seq: int | None, sites: dict[int, Any], records: dict[int, dict[str, Any]],
             diverging: list[int] | None = None) -> dict[str, Any]:
    if diverging is None:
        groups: dict[Any, list[int]] = {}
        for rank in sorted(sites):
            groups.setdefault(sites[rank], []).append(rank)
        # The largest group is taken as the norm (a tie: the group of the lowest rank).
        norm = max(groups.values(), key=lambda ranks: (len(ranks), -ranks[0]))
        diverging = [rank for rank in sorted(sites) if rank not in norm]
    return {"kind": kind, "seq": seq, "diverging": diverging, "even": kind in ("mismatch", "missing")
            and len(diverging) * 2 == len(records)}


def printing_rank(verdict: dict[str, Any]) -> int:
    """The rank that prints the full report: the lowest one still able to."""
    records = verdict.get("records", {})
    gone = set(verdict.get("diverging", [])) if verdict.get("kind") == "dead" else set()
    alive = [int(rank) for rank in records if int(rank) not in gone]
    return min(alive) if alive else 0


# -- text -------------------------------------------------------------------------------------------------------


def _describe(entry: list[Any] | None) -> str:
    if entry is None:
        return ""
    seq, op, filename, line, function, source, step, epoch, stage = entry
    text = f"collective #{seq} {op} at {filename}:{line} in {function} (step {step}, epoch {epoch}"
    text += f", {stage})" if stage else ")"
    return text + (f"\n            {source}" if source else "")


def _now(record: dict[str, Any]) -> str:
    status, wait = record["status"], record["wait"]
    last = record["history"][-1] if record["history"] else None
    if status == "collective":
        return f"waiting {wait:.1f} s in collective #{record['seq']}" + (f" ({last[1]})" if last else "")
    if status == "comm":
        return f"inside a collective fulmen did not issue (DDP gradient sync, SyncBatchNorm, torch.distributed) " \
               f"for {wait:.1f} s at {record['where']}"
    if status == "comm_error":
        return f"failed in a collective: {record['detail']}"
    if status == "finished":
        return f"ended its run after collective #{record['seq'] - 1}"
    if status == "raised":
        return f"raised {record['detail']}"
    return f"running at {record['where'] or '?'}"


def format_report(verdict: dict[str, Any], timeout: float) -> str:
    records = {int(rank): record for rank, record in verdict["records"].items()}
    kind, seq, diverging = verdict["kind"], verdict.get("seq"), verdict["diverging"]
    names = ", ".join(f"rank {rank}" for rank in diverging) or "no single rank"
    steps = {rank: record["step"] for rank, record in records.items()}
    step = steps.get(diverging[0]) if diverging else next(iter(steps.values()), "?")
    headline = {
        "mismatch": f"the DDP ranks diverged at collective #{seq}: they called different collectives",
        "missing": f"the DDP ranks diverged at collective #{seq}: not every rank made it",
        "dead": "the DDP ranks diverged: a rank stopped answering (its process ended or froze)",
        "failed": "a collective failed on a rank",
        "stuck": f"every rank has waited over {timeout:g} s and the collective does not complete",
    }[kind]
    lines = ["", "=" * 100, f"fulmen: {headline}.", f"Diverging: {names} (at its step {step})."]
    if verdict.get("even"):
        lines[-1] += " The ranks split evenly: the ranks that differ from rank 0 are named."
    lines.append("")
    for rank in sorted(records):
        record = records[rank]
        entries = {entry[0]: entry for entry in record["history"]}
        lines.append(f"  rank {rank} (pid {record['pid']}, step {record['step']}, epoch {record['epoch']}"
                     f"{', ' + record['stage'] if record['stage'] else ''}):")
        if seq is not None:
            at = entries.get(seq)
            lines.append(f"    at #{seq}: " + (_describe(at) if at else "not there (see below)"))
            before = entries.get(seq - 1)
            if before is not None:
                lines.append(f"    last agreed: {_describe(before)}")
        lines.append(f"    now: {_now(record)}")
    missing = [rank for rank in range(max(records) + 1) if rank not in records]
    for rank in missing:
        lines.append(f"  rank {rank}: no record (it never started watching, or its process ended)")
    lines += ["", "Every rank must make the same collectives in the same order: `self.log(..., sync_dist=True)`, "
              "`all_gather`, barriers, broadcasts and stop decisions", "(early stopping, checkpoints) — and the "
              "same number of training batches, which DDP synchronises. Every rank exits with code 3.",
              f"(Detector: DDPStrategy(divergence_timeout={timeout:g}) / FULMEN_DIVERGENCE_TIMEOUT seconds; 0 turns "
              "it off.)", "=" * 100, ""]
    return "\n".join(lines)


def straggler_warning(decision: dict[str, Any], records: dict[int, dict[str, Any]], me: int) -> str:
    rank = decision["straggler"]
    record = records.get(rank)
    where = f" (it is running at {record['where']}, step {record['step']})" if record and record["where"] else ""
    mine = records.get(me, {})
    return (f"\nfulmen: rank {me} has waited {mine.get('wait', 0):.0f} s in collective #{mine.get('seq')} for "
            f"rank {rank}{where}; it is still running, so fulmen keeps waiting.\n")


def raised_summary(record: dict[str, Any] | None) -> str | None:
    if record is None or record["status"] != "raised":
        return None
    return (f"fulmen: rank {record['rank']} raised at step {record['step']} (epoch {record['epoch']}"
            f"{', ' + record['stage'] if record['stage'] else ''}); every process of this job stops.\n"
            f"  {record['where']}\n{record['detail']}\n")
