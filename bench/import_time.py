"""What importing fulmen costs on top of `import torch`, and which modules outside fulmen it pulls in.

Each sample is a fresh interpreter that imports torch first, then times the fulmen import. The budget
(50 ms) is checked on the line every user script runs, with compiled bytecode present as after
`pip install` (a `--cold` run compiles every module in every sample, as under PYTHONDONTWRITEBYTECODE=1).
CPU time is the figure checked, since wall time on a shared machine also counts other processes.

    python bench/import_time.py [--repeats 9] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BUDGET_S = 0.05
COMMON = "from fulmen import Trainer, LightningModule; import fulmen.callbacks"
STATEMENTS = ("import fulmen", "from fulmen import Trainer, LightningModule", COMMON)
# Never loaded by importing fulmen (optional integrations and what fulmen defers to first use).
FORBIDDEN = ("torch._dynamo", "sympy", "tensorboard", "mlflow", "torchmetrics", "jsonargparse", "onnx",
             "onnxruntime", "matplotlib", "yaml", "tqdm", "numpy", "torch.distributed")

_PROBE = """
import json, sys, time
import torch
before = set(sys.modules)
wall, cpu = time.perf_counter(), time.process_time()
{statement}
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
new = sorted(name for name in set(sys.modules) - before if name.split('.')[0] != 'fulmen')
print(json.dumps({{"wall": wall, "cpu": cpu, "new": new}}))
"""


def sample(statement: str, env: dict[str, str]) -> dict:
    code = _PROBE.format(statement=statement)
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output)


def child_env(cold: bool, cache_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    if cold:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    elif env.get("PYTHONDONTWRITEBYTECODE"):
        # Bytecode may not be written beside the sources here: keep it in a scratch cache instead.
        env.pop("PYTHONDONTWRITEBYTECODE")
        env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cold", action="store_true", help="compile every module in every sample (no bytecode)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        env = child_env(args.cold, cache_dir)
        if not args.cold:
            sample(COMMON, env)  # writes the bytecode the timed samples read
        results = {}
        for statement in STATEMENTS:
            samples = [sample(statement, env) for _ in range(args.repeats)]
            wall = statistics.median(s["wall"] for s in samples)
            cpu = statistics.median(s["cpu"] for s in samples)
            new = sorted({name for s in samples for name in s["new"]})
            heavy = [name for name in new if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)]
            results[statement] = cpu
            print(f"{statement:<70} cpu {cpu * 1000:6.1f} ms  wall {wall * 1000:6.1f} ms  on top of torch")
            print(f"{'':<4}modules loaded outside fulmen: {new or 'none'}")
            if heavy:
                raise SystemExit(f"`{statement}` loaded {heavy}")
    mode = "cold (no bytecode)" if args.cold else "with bytecode"
    verdict = "OK" if results[COMMON] <= BUDGET_S else "OVER"
    print(f"budget {BUDGET_S * 1000:.0f} ms for `{COMMON}` ({mode}): {verdict}")
    if verdict == "OVER" and not args.cold:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
