"""2-process DDP: fulmen (strategy="ddp", gloo on CPU) against a hand-written torch.distributed loop.

Both train the same MLP on the same data with a DistributedSampler, one thread per process. Printed per
repetition pair: time to first step (from process start) and per-step time after warm-up, with ratios.

    python bench/ddp.py [--repeats 3] [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WARMUP = 50
BATCH, WIDTH, SAMPLES = 32, 256, 4096


def _data_and_model():
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    dataset = TensorDataset(torch.randn(SAMPLES, 32, generator=generator), torch.randint(0, 10, (SAMPLES,), generator=generator))
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(32, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10))
    return dataset, model


def _plain_rank(rank: int, steps: int, started: float, port: int) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn import functional as F
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    dataset, model = _data_and_model()
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler)
    step, epoch, first, clock = 0, 0, None, 0.0
    while step < steps:
        sampler.set_epoch(epoch)
        batches = iter(loader)
        for _ in range(len(loader)):
            x, y = next(batches)
            loss = F.cross_entropy(ddp(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == 1:
                first = time.time() - started
            if step == WARMUP:
                clock = time.perf_counter()
            if step >= steps:
                break
        epoch += 1
    per_step = (time.perf_counter() - clock) / (steps - WARMUP) * 1e6
    if rank == 0:
        print(json.dumps({"first_step_s": first, "us_per_step": per_step, "final_loss": loss.item()}), flush=True)
    # Both ranks leave together and skip interpreter teardown: gloo's threads can abort a process that tears
    # down while its peer still talks (fulmen's own launcher does the same).
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def run_plain(steps: int, started: float) -> None:
    import torch.multiprocessing as mp

    from fulmen.strategies.cluster_environments import find_free_port

    mp.spawn(_plain_rank, args=(steps, started, find_free_port()), nprocs=2)


def run_fulmen(steps: int, started: float) -> None:
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader

    import fulmen as L

    dataset, model = _data_and_model()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.last_loss = loss.detach()
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            step = self.trainer.global_step
            if step == 1:
                self.first = time.time() - started
            if step == WARMUP:
                self.clock = time.perf_counter()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    module = Module()
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=steps, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(dataset, batch_size=BATCH, shuffle=True))
    per_step = (time.perf_counter() - module.clock) / (steps - WARMUP) * 1e6
    if trainer.is_global_zero:
        print(json.dumps({"first_step_s": module.first, "us_per_step": per_step,
                          "final_loss": module.last_loss.item()}), flush=True)


def _measure(runner: str, steps: int) -> dict:
    env = dict(os.environ, FULMEN_BENCH_STARTED=repr(time.time()))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", runner, "--steps", str(steps)],
                          capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{runner} worker failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--worker", choices=("plain", "fulmen"))
    args = parser.parse_args()
    if args.worker:
        started = float(os.environ.get("FULMEN_BENCH_STARTED", time.time()))
        (run_plain if args.worker == "plain" else run_fulmen)(args.steps, started)
        return
    pairs = []
    for repeat in range(args.repeats):
        order = ("plain", "fulmen") if repeat % 2 == 0 else ("fulmen", "plain")
        results = {runner: _measure(runner, args.steps) for runner in order}
        pairs.append((results["plain"], results["fulmen"]))
        plain, ours = results["plain"], results["fulmen"]
        print(f"pair {repeat}: first step {plain['first_step_s']:.2f} s vs {ours['first_step_s']:.2f} s; "
              f"{plain['us_per_step']:.0f} vs {ours['us_per_step']:.0f} µs/step; "
              f"final loss {plain['final_loss']:.6f} vs {ours['final_loss']:.6f}")
    step_ratio = statistics.median(f["us_per_step"] / p["us_per_step"] for p, f in pairs)
    first_ratio = statistics.median(f["first_step_s"] / p["first_step_s"] for p, f in pairs)
    print(f"median per-step ratio fulmen/plain: {step_ratio:.3f}   time-to-first-step ratio: {first_ratio:.3f}")


if __name__ == "__main__":
    main()
