"""Per-step cost of `Trainer(trace_hooks=...)`: bench/overhead.py's case (default "plain") run as the hand-written
loop, as fulmen without tracing and as fulmen with a `HookTracer`, each in a fresh single-threaded process, the
three in rotating order; medians over the repeats.

    python bench/hook_tracer.py                 # 5 repeats
    python bench/hook_tracer.py --repeats 9 --case with_validation

"off/plain" is bench/overhead.py's ratio (tracing off must leave it unchanged: nothing is wrapped then). The
traced run records one dict per hook call (about 25 per training step here: a traced run calls every callback's
and the module's hook, as Lightning does) and keeps them in memory; "records/step" and "µs/record" say where
the cost goes.

Measured on the shared 2-core development machine under load (plain case, 5 runs): 884 µs/step plain, 958 off,
1320 traced: about 186 µs/step for 14 records per step (~13 µs a record); tracing off: off/plain as in overhead.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # noqa: E402  (bench/overhead.py: the model, data, loops and timing)

RUNNERS = ("plain", "off", "traced")


def _worker(runner: str, case: str) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        if runner == "plain":
            return overhead.run_plain(*overhead.CASES[case], workdir)
        tracer = None
        if runner == "traced":
            from fulmen.debug import HookTracer

            tracer = HookTracer()
        flags = {} if tracer is None else {"trace_hooks": tracer}
        result = overhead.run_fulmen(*overhead.CASES[case], workdir, **flags)
    if tracer is not None:
        result["records_per_step"] = len(tracer.records) / overhead.CASES[case][1]
    return result


def _measure(runner: str, case: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", runner, "--case", case],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker ({runner}) for {case!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=["plain", "with_validation", "compute_bound"], default="plain")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=RUNNERS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.case)))
        return
    runs = []
    for repeat in range(args.repeats):
        order = RUNNERS[repeat % 3:] + RUNNERS[:repeat % 3]
        runs.append({runner: _measure(runner, args.case) for runner in order})
    med = {runner: statistics.median(run[runner]["us_per_step"] for run in runs) for runner in RUNNERS}
    off_ratio = statistics.median(run["off"]["us_per_step"] / run["plain"]["us_per_step"] for run in runs)
    traced_ratio = statistics.median(run["traced"]["us_per_step"] / run["plain"]["us_per_step"] for run in runs)
    cost = statistics.median(run["traced"]["us_per_step"] - run["off"]["us_per_step"] for run in runs)
    records = statistics.median(run["traced"]["records_per_step"] for run in runs)
    same = all(run["off"]["final_loss"] == run["traced"]["final_loss"] for run in runs)
    print(f"{'case':<16}{'plain µs/step':>14}{'off µs/step':>13}{'traced µs/step':>16}{'off/plain':>11}"
          f"{'traced/plain':>14}{'cost µs/step':>14}{'records/step':>14}{'µs/record':>11}  same loss")
    print(f"{args.case:<16}{med['plain']:>14.1f}{med['off']:>13.1f}{med['traced']:>16.1f}{off_ratio:>11.3f}"
          f"{traced_ratio:>14.3f}{cost:>14.1f}{records:>14.1f}{cost / records:>11.2f}  {same}")


if __name__ == "__main__":
    main()
