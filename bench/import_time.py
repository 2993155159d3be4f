"""What `import fulmen` costs on top of `import torch`, and which heavy modules it pulls in.

Each sample is a fresh interpreter that imports torch first, then times the fulmen import.

    python bench/import_time.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

FORBIDDEN = ("torch._dynamo", "sympy", "tensorboard", "mlflow", "torchmetrics", "jsonargparse", "onnx",
             "onnxruntime", "matplotlib")

_PROBE = """
import json, sys, time
import torch
start = time.perf_counter()
{statement}
elapsed = time.perf_counter() - start
loaded = sorted(name for name in sys.modules if name.split('.')[0] in {top} or name.startswith('torch._dynamo'))
print(json.dumps({{"seconds": elapsed, "loaded": loaded}}))
"""


def sample(statement: str) -> dict:
    tops = {name.split(".")[0] for name in FORBIDDEN if not name.startswith("torch")}
    code = _PROBE.format(statement=statement, top=repr(tops))
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    statements = {
        "import fulmen": "import fulmen",
        "from fulmen import Trainer, LightningModule": "from fulmen import Trainer, LightningModule",
    }
    worst = 0.0
    for label, statement in statements.items():
        samples = [sample(statement) for _ in range(args.repeats)]
        median = statistics.median(s["seconds"] for s in samples)
        loaded = sorted({name for s in samples for name in s["loaded"]})
        print(f"{label:<48} {median * 1000:7.1f} ms on top of torch   heavy modules loaded: {loaded or 'none'}")
        if label == "import fulmen":
            worst = median
            if loaded:
                raise SystemExit(f"`import fulmen` loaded {loaded}")
    print(f"budget 100 ms: {'OK' if worst <= 0.1 else 'OVER'}")


if __name__ == "__main__":
    main()
