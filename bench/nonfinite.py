"""Per-step cost of `Trainer(on_nonfinite=...)`: each mode against the hand-written loop of `overhead.py`, same run.

"warn" (the default) reads only values fulmen materialises anyway, so it should cost what the plain Trainer costs;
"raise"/"skip"/"stop" run one fused finiteness check of the loss and gradients (one device sync) per optimizer step.
Every measurement runs in a fresh process (one thread); runners alternate; ratios are per repeat, then the median.
The clock is the process's CPU time by default (`--clock wall` for wall-clock time), so that other work on a
shared machine does not count as time spent by the step.

    python bench/nonfinite.py                    # case "plain", 5 repeats
    python bench/nonfinite.py --case defaults --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import CASES, measure_worker, run_fulmen, run_plain  # noqa: E402  (the same model, data and both loops)

MODES = ("warn", "raise", "skip", "stop")


def _no_step_skipped(trainer) -> None:
    assert trainer.nonfinite_guard.skipped_steps == 0


def _measure(runner: str, case: str, clock: str) -> dict:
    return measure_worker(__file__, runner, case, "--clock", clock)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=("plain", "defaults"), default="plain")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=("plain", *MODES))
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    width, steps, validate, defaults = CASES[args.case]
    if args.worker:
        if args.clock == "cpu":
            time.perf_counter = time.process_time  # both loops (and `overhead.run_plain`) read this clock
        with tempfile.TemporaryDirectory() as workdir:
            if args.worker == "plain":
                result = run_plain(width, steps, False, defaults, workdir)
            else:
                result = run_fulmen(width, steps, False, defaults, workdir, after_fit=_no_step_skipped,
                                    on_nonfinite=args.worker)
        print(json.dumps(result))
        return
    runners = ("plain", *MODES)
    rows = {runner: [] for runner in runners}
    for repeat in range(args.repeats):
        order = runners[repeat % len(runners):] + runners[:repeat % len(runners)]
        results = {runner: _measure(runner, args.case, args.clock) for runner in order}
        for runner in runners:
            rows[runner].append(results[runner])
    plain = [result["us_per_step"] for result in rows["plain"]]
    warn = [result["us_per_step"] for result in rows["warn"]]
    print(f"case {args.case!r}, {args.clock} time, {args.repeats} repeats: medians (and the fastest run, least disturbed by load)")
    print(f"{'runner':<8}{'µs/step':>10}{'fastest':>10}{'vs plain loop':>15}{'vs warn µs':>12}  same loss")
    for runner in runners:
        times = [result["us_per_step"] for result in rows[runner]]
        ratio = statistics.median(t / p for t, p in zip(times, plain))
        extra = statistics.median(t - w for t, w in zip(times, warn))
        same = all(abs(r["final_loss"] - p["final_loss"]) <= 1e-6 * max(1.0, abs(p["final_loss"]))
                   for r, p in zip(rows[runner], rows["plain"]))
        print(f"{runner:<8}{statistics.median(times):>10.1f}{min(times):>10.1f}{ratio:>15.3f}{extra:>+12.1f}  {same}")


if __name__ == "__main__":
    main()
