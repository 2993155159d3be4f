"""Per-step cost of run fingerprints (`Trainer(fingerprint=...)`), measured in the same run as the plain loop.

Three workers per repeat, each in a fresh one-thread process, in rotating order: the hand-written loop, fulmen, and
fulmen with fingerprints on (the same model, data and seed as `bench/overhead.py`). The cost of fingerprints is the
median over repeats of (fulmen with fingerprints - fulmen) per step; all three must end at the same loss (recording
must not change training). The time includes writing the file (a block every 256 steps, and at the end).

    python bench/fingerprint.py                    # 'plain' case, 7 repeats
    python bench/fingerprint.py --case compute_bound --repeats 5
    python bench/fingerprint.py --cpu-time         # process CPU time instead of wall time (a loaded machine)
    python bench/fingerprint.py --in-loop          # the recorder's own time inside fulmen's loop (the real cost)
    python bench/fingerprint.py --recording        # the recorder called in a tight loop (a lower bound)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import CASES, measure_worker, run_fulmen, run_plain  # noqa: E402

RUNNERS = ("plain", "fulmen", "fingerprint")


def torch_threads_one() -> None:
    import torch

    torch.set_num_threads(1)


def run_fingerprint(width: int, steps: int, validate: bool, defaults: bool, workdir: str) -> dict:
    from fulmen.debug import read_fingerprints

    directory = os.path.join(workdir, "run")
    result = run_fulmen(width, steps, validate, defaults, workdir, fingerprint=directory)
    result["rows"] = len(read_fingerprints(os.path.join(directory, "fingerprints.bin")).rows)
    return result


def measure_recording(repeats: int) -> None:
    """The recording's own cost: the before-step function with fingerprints, against a no-op one, called with the
    bench model's gradients (block writes included), interleaved; the minimum over repeats. Before each call every
    parameter gets new gradient tensors (copies), as a backward after `zero_grad()` gives it (the no-op too). Also
    without the gradient norm and without the CPU generator state, to show their shares."""
    import time
    import types

    import torch

    import fulmen
    from fulmen.debug import fingerprint

    from overhead import _build

    net = _build(64)[0]
    parameters = list(net.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9)
    net(torch.randn(32, 32)).sum().backward()
    gradients = [p.grad for p in parameters]
    constant = torch.default_generator.get_state()
    no_norm = {"_norm_function": lambda *_: (lambda _: None, "norm")}
    no_rng = {"_cpu_state_function": lambda: (lambda: constant)}
    variants = {"no-op": lambda _optimizer: None}
    patches = {"fingerprint": {}, "without grad_norm": no_norm, "without rng_torch": no_rng,
               "without both": {**no_norm, **no_rng}}
    for name, patch in patches.items():
        saved = {key: getattr(fingerprint, key) for key in patch}
        for key, value in patch.items():
            setattr(fingerprint, key, value)
        trainer = fulmen.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                                 default_root_dir=tempfile.mkdtemp())
        trainer._optimization.optimizers = [optimizer]
        trainer.strategy._before_step = None
        run = types.SimpleNamespace(ckpt_path=None, fit_loop=types.SimpleNamespace(batches_done=3))
        trainer._state.global_step = 5  # not a step where Python's and NumPy's generators are sampled
        fingerprint._Recorder(fingerprint.FingerprintSetting(True), trainer, run)
        variants[name] = trainer.strategy._before_step
        for key, value in saved.items():
            setattr(fingerprint, key, value)
    # Short chunks (one block each), rotating between the variants, the minimum per variant: a chunk is short enough
    # to often run undisturbed on a shared machine, and every variant sees the same conditions.
    best = dict.fromkeys(variants, float("inf"))
    calls = 256
    clock = time.perf_counter
    for _ in range(repeats * 10):
        for name, function in variants.items():
            start = clock()
            for _ in range(calls):
                for parameter, gradient in zip(parameters, gradients):
                    parameter.grad = gradient.clone()
                function(optimizer)
            best[name] = min(best[name], (clock() - start) / calls * 1e6)
    base = best.pop("no-op")
    print(f"recording cost, µs per optimizer step (min over {repeats * 10} interleaved blocks of {calls} steps):")
    for name, value in best.items():
        print(f"  {name:<20}{value - base:>6.2f}")


def measure_in_loop(repeats: int, case: str) -> None:
    """The recorder's own time per optimizer step inside fulmen's training loop: its before-step function is timed
    around everything it does except the step hooks it wraps (block writes included, so the mean carries them).
    A tight loop (`--recording`) keeps the recorder's code and data hot in the CPU caches and branch predictors;
    between a real forward, backward and optimizer step they are cold, and the same work takes about twice as long.
    The backward wrapper (one assignment) is not included."""
    import time

    from fulmen.debug import fingerprint

    width, steps, validate, defaults = CASES[case]
    wrap_before_step = fingerprint._Recorder._wrap_before_step
    times: list[float] = []
    clock = time.perf_counter

    def timed_wrap(self, before_step, *args):  # noqa: ANN001, ANN202 - mirrors the private method
        inside = [0.0]

        def timed_hooks(optimizer):  # noqa: ANN001, ANN202
            start = clock()
            if before_step is not None:
                before_step(optimizer)
            inside[0] = clock() - start

        recording = wrap_before_step(self, timed_hooks, *args)

        def timed_recording(optimizer):  # noqa: ANN001, ANN202
            start = clock()
            recording(optimizer)
            times.append(clock() - start - inside[0])

        return timed_recording

    fingerprint._Recorder._wrap_before_step = timed_wrap
    means, medians = [], []
    for _ in range(repeats):
        times.clear()
        with tempfile.TemporaryDirectory() as workdir:
            run_fulmen(width, steps, validate, defaults, workdir, fingerprint=os.path.join(workdir, "run"))
        measured = times[len(times) // 10:]  # past the first blocks (warm-up)
        means.append(statistics.fmean(measured) * 1e6)
        medians.append(statistics.median(measured) * 1e6)
    fingerprint._Recorder._wrap_before_step = wrap_before_step
    print(f"recorder time inside the loop, case {case}, µs per optimizer step ({repeats} runs of {steps} steps; "
          "median over runs):")
    print(f"  mean (block writes included) {statistics.median(means):6.2f}   median step "
          f"{statistics.median(medians):6.2f}")


def _measure(runner: str, case: str, cpu_time: bool) -> dict:
    return measure_worker(__file__, runner, case, *(["--cpu-time"] if cpu_time else []))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES), default="plain")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", choices=RUNNERS)
    parser.add_argument("--recording", action="store_true", help="measure only the per-step recording, in-process")
    parser.add_argument("--in-loop", action="store_true", help="time the recorder inside fulmen's loop, in-process")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with this process's CPU time: time-sharing on a loaded machine does not count")
    args = parser.parse_args()
    if args.recording:
        torch_threads_one()
        measure_recording(args.repeats)
        return
    if args.in_loop:
        torch_threads_one()
        measure_in_loop(args.repeats, args.case)
        return
    if args.worker:
        if args.cpu_time:
            import time

            time.perf_counter = time.process_time  # the workers of bench/overhead.py read perf_counter
        runner = {"plain": run_plain, "fulmen": run_fulmen, "fingerprint": run_fingerprint}[args.worker]
        with tempfile.TemporaryDirectory() as workdir:
            print(json.dumps(runner(*CASES[args.case], workdir)))
        return
    results: dict[str, list[dict]] = {runner: [] for runner in RUNNERS}
    for repeat in range(args.repeats):
        order = RUNNERS[repeat % 3:] + RUNNERS[:repeat % 3]
        for runner in order:
            results[runner].append(_measure(runner, args.case, args.cpu_time))
    per_step = {runner: statistics.median(r["us_per_step"] for r in results[runner]) for runner in RUNNERS}
    cost = statistics.median(f["us_per_step"] - u["us_per_step"]
                             for f, u in zip(results["fingerprint"], results["fulmen"]))
    ratio = statistics.median(u["us_per_step"] / p["us_per_step"] for u, p in zip(results["fulmen"], results["plain"]))
    ratio_fp = statistics.median(f["us_per_step"] / p["us_per_step"]
                                 for f, p in zip(results["fingerprint"], results["plain"]))
    losses = {runner: results[runner][0]["final_loss"] for runner in RUNNERS}
    same = len({round(loss, 6) for loss in losses.values()}) == 1
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"case {args.case}, {args.repeats} repeats, {clock}, {results['fingerprint'][0]['rows']} fingerprint rows "
          "per run")
    print(f"{'plain µs/step':>14}{'fulmen':>10}{'+fingerprint':>14}{'fingerprint cost µs/step':>26}"
          f"{'ratio':>8}{'ratio fp':>10}  same loss")
    print(f"{per_step['plain']:>14.1f}{per_step['fulmen']:>10.1f}{per_step['fingerprint']:>14.1f}{cost:>26.2f}"
          f"{ratio:>8.3f}{ratio_fp:>10.3f}  {same} ({', '.join(f'{k} {v:.6f}' for k, v in losses.items())})")


if __name__ == "__main__":
    main()
