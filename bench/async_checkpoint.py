"""Training step time with a checkpoint every N steps: `AsyncCheckpointIO` (saves in a background thread) against
the default synchronous `TorchCheckpointIO`, and against no checkpoints at all, measured in the same run.

The model is an MLP with about 6.3M parameters trained with SGD + momentum, so each checkpoint holds about 50 MB
(weights and momentum buffers). `ModelCheckpoint(every_n_train_steps=N)` keeps the newest file (each save
replaces the previous one). Each measurement runs in a fresh process on one thread; the runners alternate;
ratios are taken per round, then the median. "train" is the time per step while training (what the training
loop waits for); "total" also counts the end of the run, where the async IO waits for its last save.

    python bench/async_checkpoint.py                       # 3 rounds, a checkpoint every 10 steps
    python bench/async_checkpoint.py --every 5 --dir /data/ckpts
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BATCH, WARMUP = 16, 5
RUNNERS = ("none", "sync", "async")


def run(runner: str, steps: int, every: int, directory: str) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as L
    from fulmen.callbacks import ModelCheckpoint
    from fulmen.plugins.io import AsyncCheckpointIO

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(BATCH * 16, 1024), torch.randint(0, 10, (BATCH * 16,)))
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(1))

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(1024, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                                     nn.Linear(2048, 10))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            if self.trainer.global_step == WARMUP:
                self.started = time.perf_counter()
            self.trained = time.perf_counter()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    module = Module()
    callbacks = [] if runner == "none" else [ModelCheckpoint(dirpath=directory, every_n_train_steps=every)]
    plugins = [AsyncCheckpointIO()] if runner == "async" else None
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=runner != "none",
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, plugins=plugins)
    trainer.fit(module, loader)
    finished = time.perf_counter()
    assert trainer.global_step == steps
    files = sorted(name for name in os.listdir(directory)) if runner != "none" else []
    size = sum(os.path.getsize(os.path.join(directory, name)) for name in files)
    timed = steps - WARMUP
    return {"train_us": (module.trained - module.started) / timed * 1e6,
            "total_us": (finished - module.started) / timed * 1e6, "files": files, "mb": size / 2**20}


def _measure(runner: str, steps: int, every: int, root: str) -> dict:
    with tempfile.TemporaryDirectory(dir=root) as directory:
        done = subprocess.run([sys.executable, __file__, "--worker", runner, "--steps", str(steps),
                               "--every", str(every), "--dir", directory], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{runner} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=105)
    parser.add_argument("--every", type=int, default=10, help="checkpoint every N training steps")
    parser.add_argument("--dir", default=None, help="where checkpoints are written (default: a temporary folder)")
    parser.add_argument("--worker", choices=RUNNERS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run(args.worker, args.steps, args.every, args.dir)))
        return
    rounds = []
    for repeat in range(args.repeats):
        order = RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]
        rounds.append({runner: _measure(runner, args.steps, args.every, args.dir) for runner in order})
    first = rounds[0]
    assert first["sync"]["files"] == first["async"]["files"], (first["sync"]["files"], first["async"]["files"])
    print(f"MLP 6.3M parameters, SGD+momentum, batch {BATCH}, {args.steps} steps ({WARMUP} warm-up), a checkpoint "
          f"every {args.every} steps ({first['sync']['mb']:.1f} MB each), 1 thread, {args.repeats} rounds")
    print(f"{'':<8}{'train µs/step':>15}{'total µs/step':>15}")
    for runner in RUNNERS:
        train = statistics.median(r[runner]["train_us"] for r in rounds)
        total = statistics.median(r[runner]["total_us"] for r in rounds)
        print(f"{runner:<8}{train:>15.0f}{total:>15.0f}")
    saved = statistics.median(r["sync"]["train_us"] - r["async"]["train_us"] for r in rounds)
    ratio = statistics.median(r["sync"]["train_us"] / r["async"]["train_us"] for r in rounds)
    cost = statistics.median((r["sync"]["train_us"] - r["none"]["train_us"]) * args.every for r in rounds)
    cost_async = statistics.median((r["async"]["train_us"] - r["none"]["train_us"]) * args.every for r in rounds)
    print(f"per step saved by async: {saved:.0f} µs ({ratio:.2f}x, sync / async train time)")
    print(f"training time per checkpoint: sync {cost / 1000:.1f} ms, async {cost_async / 1000:.1f} ms")
    print(f"same files: {first['sync']['files']}")


if __name__ == "__main__":
    main()
