"""Training step time with a checkpoint every N steps: `AsyncCheckpointIO` (saves in a background thread) against
the default synchronous `TorchCheckpointIO`, and against no checkpoints at all, measured in the same run.

The model is an MLP with about 6.3M parameters trained with SGD + momentum, so each checkpoint holds about 50 MB
(weights and momentum buffers). `ModelCheckpoint(every_n_train_steps=N)` keeps the newest file (each save
replaces the previous one). Each measurement runs in a fresh process on one thread; the runners alternate;
ratios are taken per round, then the median. "train" is the time per step while training (what the training
loop waits for); "total" also counts the end of the run, where the async IO waits for its last save; "train
CPU" is the training thread's CPU time, which a shared machine's neighbours disturb far less than wall time.

    python bench/async_checkpoint.py                       # 3 rounds, a checkpoint every 10 steps
    python bench/async_checkpoint.py --every 5 --dir /data/ckpts
    python bench/async_checkpoint.py --disk-mbps 200          # as if saving to a 200 MB/s network disk
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


def run(runner: str, steps: int, every: int, directory: str, disk_mbps: float | None) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as L
    from fulmen.callbacks import ModelCheckpoint
    from fulmen.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

    class SlowDiskIO(TorchCheckpointIO):
        """Writes, then waits as long as a device writing `disk_mbps` MB/s would have taken (a network or
        cloud file system, say): the waiting is what a background save can overlap with training."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            super().save_checkpoint(checkpoint, path, storage_options)
            time.sleep(os.path.getsize(path) / 2**20 / disk_mbps)

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
                self.started = (time.perf_counter(), time.thread_time())
            self.trained = (time.perf_counter(), time.thread_time())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    module = Module()
    callbacks = [] if runner == "none" else [ModelCheckpoint(dirpath=directory, every_n_train_steps=every)]
    io = SlowDiskIO() if disk_mbps else TorchCheckpointIO()
    plugins = [AsyncCheckpointIO(io) if runner == "async" else io]
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=runner != "none",
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, plugins=plugins)
    trainer.fit(module, loader)
    finished = (time.perf_counter(), time.thread_time())
    assert trainer.global_step == steps
    files = sorted(name for name in os.listdir(directory)) if runner != "none" else []
    size = sum(os.path.getsize(os.path.join(directory, name)) for name in files)
    timed = steps - WARMUP
    (wall, cpu), (end_wall, end_cpu) = module.started, module.trained
    return {"train_us": (end_wall - wall) / timed * 1e6, "total_us": (finished[0] - wall) / timed * 1e6,
            "train_cpu_us": (end_cpu - cpu) / timed * 1e6, "files": files, "mb": size / 2**20}


def _measure(runner: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        command = [sys.executable, __file__, "--worker", runner, "--steps", str(args.steps), "--every",
                   str(args.every), "--dir", directory]
        if args.disk_mbps:
            command += ["--disk-mbps", str(args.disk_mbps)]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{runner} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=105)
    parser.add_argument("--every", type=int, default=10, help="checkpoint every N training steps")
    parser.add_argument("--dir", default=None, help="where checkpoints are written (default: a temporary folder)")
    parser.add_argument("--disk-mbps", type=float, default=None,
                        help="make each save take as long as on a device writing this many MB/s")
    parser.add_argument("--worker", choices=RUNNERS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run(args.worker, args.steps, args.every, args.dir, args.disk_mbps)))
        return
    rounds = []
    for repeat in range(args.repeats):
        order = RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]
        rounds.append({runner: _measure(runner, args) for runner in order})
    first = rounds[0]
    assert first["sync"]["files"] == first["async"]["files"], (first["sync"]["files"], first["async"]["files"])
    print(f"MLP 6.3M parameters, SGD+momentum, batch {BATCH}, {args.steps} steps ({WARMUP} warm-up), a checkpoint "
          f"every {args.every} steps ({first['sync']['mb']:.1f} MB each), 1 thread, {args.repeats} rounds"
          + (f", a {args.disk_mbps:g} MB/s disk" if args.disk_mbps else ", local disk"))
    print(f"{'':<8}{'train µs/step':>15}{'total µs/step':>15}{'train CPU µs/step':>19}")
    for runner in RUNNERS:
        keys = ("train_us", "total_us", "train_cpu_us")
        columns = (statistics.median(r[runner][key] for r in rounds) for key in keys)
        print(f"{runner:<8}" + "".join(f"{value:>{width}.0f}" for value, width in zip(columns, (15, 15, 19))))
    for label, key in (("wall", "train_us"), ("training-thread CPU", "train_cpu_us")):
        saved = statistics.median(r["sync"][key] - r["async"][key] for r in rounds)
        ratio = statistics.median(r["sync"][key] / r["async"][key] for r in rounds)
        cost = statistics.median((r["sync"][key] - r["none"][key]) * args.every for r in rounds) / 1000
        cost_async = statistics.median((r["async"][key] - r["none"][key]) * args.every for r in rounds) / 1000
        print(f"{label}: async saves {saved:.0f} µs per step ({ratio:.2f}x sync / async); training time per "
              f"checkpoint {cost:.1f} ms sync, {cost_async:.1f} ms async")
    print(f"same files: {first['sync']['files']}")


if __name__ == "__main__":
    main()
