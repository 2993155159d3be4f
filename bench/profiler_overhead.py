"""Per-step cost of `Trainer(profiler="simple")`: the same fulmen run (bench/overhead.py's "plain" case, by default)
without and with SimpleProfiler, each in a fresh single-threaded process, alternating; medians of the pairs.

    python bench/profiler_overhead.py                 # 5 pairs
    python bench/profiler_overhead.py --repeats 9 --case with_validation

The difference is what profiling a step costs: the timer around each action (each hook, the strategy's steps,
the batch draw: about 18 per training step here), and, as in Lightning, calling every callback's and the module's
hook whether overridden or not (so each is in the report). The worker also counts the actions per step and times
one start/stop pair alone: "timer µs/step" is the timers' share, steadier than the difference on a busy machine.
Without a profiler nothing is wrapped at all (bench/overhead.py's ratios are unchanged).

Measured on the development machine (plain case, 5 pairs): 289 µs/step without, 331 with SimpleProfiler,
a median cost of about 27 µs per training step (18 actions; the timers alone about 4 µs).
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
import overhead  # noqa: E402  (bench/overhead.py: the model, data and timing)


def _action_cost(repeats: int = 200_000) -> float:
    """µs of one `profile(action)` around nothing: what each timed hook adds (stable even on a busy machine)."""
    import time

    from fulmen.profilers import SimpleProfiler

    profiler = SimpleProfiler()
    start, stop = profiler.start, profiler.stop
    began = time.perf_counter()
    for _ in range(repeats):
        start("action")
        stop("action")
    return (time.perf_counter() - began) / repeats * 1e6


def _measure(profiler: str, case: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", profiler, "--case", case],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker ({profiler}) for {case!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=["plain", "with_validation", "compute_bound"], default="plain")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=("none", "simple"))
    args = parser.parse_args()
    if args.worker:
        import logging

        logging.getLogger("fulmen.profilers").setLevel(logging.WARNING)  # the report itself is not measured
        from fulmen.profilers import SimpleProfiler

        profiler = None if args.worker == "none" else SimpleProfiler()
        with tempfile.TemporaryDirectory() as workdir:
            result = overhead.run_fulmen(*overhead.CASES[args.case], workdir, profiler=profiler)
        if profiler is not None:
            steps = overhead.CASES[args.case][1]
            result["actions_per_step"] = sum(map(len, profiler.recorded_durations.values())) / steps
            result["us_per_action"] = _action_cost()
        print(json.dumps(result))
        return
    pairs = []
    for repeat in range(args.repeats):
        order = ("none", "simple") if repeat % 2 == 0 else ("simple", "none")
        results = {name: _measure(name, args.case) for name in order}
        pairs.append((results["none"], results["simple"]))
    plain = statistics.median(p["us_per_step"] for p, _ in pairs)
    profiled = statistics.median(s["us_per_step"] for _, s in pairs)
    cost = statistics.median(s["us_per_step"] - p["us_per_step"] for p, s in pairs)
    same = all(p["final_loss"] == s["final_loss"] for p, s in pairs)
    actions = statistics.median(s["actions_per_step"] for _, s in pairs)
    per_action = statistics.median(s["us_per_action"] for _, s in pairs)
    print(f"{'case':<16}{'no profiler µs/step':>21}{'SimpleProfiler µs/step':>24}{'cost µs/step':>14}"
          f"{'actions/step':>14}{'µs/action':>11}{'timer µs/step':>15}  same loss")
    print(f"{args.case:<16}{plain:>21.1f}{profiled:>24.1f}{cost:>14.1f}{actions:>14.1f}{per_action:>11.2f}"
          f"{actions * per_action:>15.1f}  {same}")


if __name__ == "__main__":
    main()
