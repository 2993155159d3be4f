"""`python -m fulmen diff RUN_A RUN_B`: the first optimizer step, and the component (loss, grad_norm, rng_*, or the
step's position), where two runs' fingerprints (`Trainer(fingerprint=True)`) differ.

Exit code 0: identical over the steps both recorded; 1: diverged; 2: an error (a missing or unreadable file).
Values are compared bit for bit unless `rtol`/`atol` allow a difference in `loss` and `grad_norm`.
"""

from __future__ import annotations

import glob
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from fulmen.debug.fingerprint_file import COMPONENTS, SAMPLED, Fingerprints, file_name, read_fingerprints

_POSITION = ("step", "epoch", "batch_idx", "optimizer")


@dataclass
class Divergence:
    """Where two runs first differ: `row_a`/`row_b` (the rows at that point) and the differing `components`."""

    rank: int
    row_a: dict[str, Any]
    row_b: dict[str, Any]
    components: list[str]
    identical_before: int  # rows that matched before it

    @property
    def step(self) -> int:
        return int(self.row_a["step"])


@dataclass
class RankDiff:
    """The comparison of one rank's files: how many rows were compared, and the divergence if any."""

    rank: int
    a: Fingerprints
    b: Fingerprints
    compared: int = 0
    first_step: int | None = None
    last_step: int | None = None
    divergence: Divergence | None = None
    notes: list[str] = field(default_factory=list)


def resolve_files(run: str) -> dict[int, str]:
    """The fingerprint files of a run: a file itself, or the per-rank files in a run directory."""
    if os.path.isfile(run):
        return {read_fingerprints(run).rank: run}
    if not os.path.isdir(run):
        raise FileNotFoundError(f"{run} does not exist; pass a run directory (e.g. lightning_logs/version_0) or a "
                                "fingerprints.bin file.")
    files = {0: os.path.join(run, file_name(0))} if os.path.isfile(os.path.join(run, file_name(0))) else {}
    for path in glob.glob(os.path.join(glob.escape(run), "fingerprints.rank*.bin")):
        rank = os.path.basename(path)[len("fingerprints.rank"):-len(".bin")]
        if rank.isdigit():
            files[int(rank)] = path
    if not files:
        raise FileNotFoundError(f"{run} holds no fingerprints.bin: record the run with `Trainer(fingerprint=True)` "
                                "(written to the logger's log_dir, else default_root_dir).")
    return files


def diff_runs(run_a: str, run_b: str, rtol: float = 0.0, atol: float = 0.0) -> list[RankDiff]:
    """Compare every rank the two runs both recorded; raises FileNotFoundError/ValueError for unusable input."""
    files_a, files_b = resolve_files(run_a), resolve_files(run_b)
    common = sorted(files_a.keys() & files_b.keys())
    if not common:
        raise ValueError(f"the runs share no rank: {run_a} has ranks {sorted(files_a)}, {run_b} has {sorted(files_b)}.")
    results = [_diff_rank(rank, read_fingerprints(files_a[rank]), read_fingerprints(files_b[rank]), rtol, atol)
               for rank in common]
    only = sorted(files_a.keys() ^ files_b.keys())
    if only:
        results[0].notes.append(f"ranks {only} were recorded by one run only and are not compared")
    return results


def _diff_rank(rank: int, a: Fingerprints, b: Fingerprints, rtol: float, atol: float) -> RankDiff:
    result = RankDiff(rank, a, b)
    if not a.rows or not b.rows:
        empty = a.path if not a.rows else b.path
        raise ValueError(f"{empty} holds no optimizer steps (the run stopped before its first step).")
    start = max(a.rows[0]["step"], b.rows[0]["step"])
    rows_a = [row for row in a.rows if row["step"] >= start]
    rows_b = [row for row in b.rows if row["step"] >= start]
    for count, (row_a, row_b) in enumerate(zip(rows_a, rows_b)):
        differing = [name for name in _POSITION if row_a[name] != row_b[name]]
        differing += [name for name in COMPONENTS if not _same(name, row_a[name], row_b[name], rtol, atol)]
        if differing:
            result.divergence = Divergence(rank, row_a, row_b, differing, count)
            break
        result.compared = count + 1
        result.last_step = row_a["step"]
    result.first_step = start
    if len(rows_a) != len(rows_b) and result.divergence is None:
        longer, rows = ("A", rows_a) if len(rows_a) > len(rows_b) else ("B", rows_b)
        result.notes.append(f"run {longer} goes on to step {rows[-1]['step']}; only the steps both recorded are "
                            "compared")
    if a.rows[0]["step"] != b.rows[0]["step"]:
        result.notes.append(f"the runs' files start at steps {a.rows[0]['step']} (A) and {b.rows[0]['step']} (B); "
                            f"compared from step {start}")
    for label, run in (("A", a), ("B", b)):
        if run.truncated:
            result.notes.append(f"run {label}'s file ends inside a block (the process died while writing it)")
    return result


def _same(name: str, a: Any, b: Any, rtol: float, atol: float) -> bool:
    if a == b:
        return True
    if name in SAMPLED:
        return a == 0 or b == 0  # sampled in one run only (another sampling interval): nothing to compare
    if isinstance(a, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= atol + rtol * abs(b)
    return False


def format_report(run_a: str, run_b: str, results: list[RankDiff]) -> tuple[str, int]:
    """The report `python -m fulmen diff` prints, and its exit code (0 identical, 1 diverged)."""
    lines = []
    for label, files in (("A", results[0].a), ("B", results[0].b)):
        lines.append(f"{label}: {files.path} ({_describe(files)})")
    diverged = [result for result in results if result.divergence is not None]
    if diverged:
        first = min(diverged, key=lambda result: (result.divergence.step, result.rank))
        lines += _divergence_lines(first)
    else:
        for result in results:
            checked = [name for name in COMPONENTS if any(row[name] for row in result.a.rows)]
            lines.append(f"identical: {result.compared} optimizer steps ({result.first_step}..{result.last_step}) "
                         f"on rank {result.rank} agree in {', '.join(checked) or 'position'}")
    for result in results:
        lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines), 1 if diverged else 0


def _describe(files: Fingerprints) -> str:
    rows = files.rows
    text = f"rank {files.rank}, {len(rows)} steps" + (f" {rows[0]['step']}..{rows[-1]['step']}" if rows else "")
    for session in files.sessions:
        if session.get("event") == "resume":
            where = f" from {session['checkpoint']}" if session.get("checkpoint") else ""
            text += f"; resumed at step {session['step']}{where}"
    return text


def _divergence_lines(result: RankDiff) -> list[str]:
    divergence = result.divergence
    row_a, row_b = divergence.row_a, divergence.row_b
    lines = [f"diverged at optimizer step {divergence.step} (epoch {row_a['epoch']}, batch_idx {row_a['batch_idx']}, "
             f"optimizer {row_a['optimizer']}) on rank {divergence.rank}: {', '.join(divergence.components)}"]
    for name in divergence.components:
        lines.append(f"  {name:<10} A {_show(name, row_a[name])}   B {_show(name, row_b[name])}")
        if name in SAMPLED:
            every = result.a.sessions[-1].get("sample_every", 0)
            lines.append(f"  ({name} is sampled every {every} steps: it changed after step "
                         f"{max(result.first_step, divergence.step - every)})")
    if divergence.identical_before:
        lines.append(f"steps {result.first_step}..{divergence.step - 1} are identical "
                     f"({divergence.identical_before} rows)")
    for label, files in (("A", result.a), ("B", result.b)):
        for session in files.sessions:
            if session.get("event") == "resume" and session["step"] == divergence.step:
                lines.append(f"hint: run {label} resumed from a checkpoint at exactly this step: the resume did not "
                             "restore everything the step depends on")
    return lines


def _show(name: str, value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if name.startswith("rng_"):
        return f"{value & ((1 << 64) - 1):#018x}"
    return str(value)


def main(run_a: str, run_b: str, rtol: float = 0.0, atol: float = 0.0) -> int:
    """Print the report of `diff_runs`; return the exit code (2 with a message on stderr when input is unusable)."""
    try:
        results = diff_runs(run_a, run_b, rtol, atol)
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report, code = format_report(run_a, run_b, results)
    print(report)
    return code
