"""Cost of the DDP divergence detector: 2 processes (strategy="ddp", gloo on CPU), detector on (default) vs off
(`FULMEN_DIVERGENCE_TIMEOUT=0`), alternating runs, one thread per process.

Measured on rank 0: per-step time of a training loop that logs two `sync_dist=True` values per step (after warm-up),
and the time of one `strategy.reduce` of a scalar (2000 calls after training), on vs off.

    python bench/divergence.py [--repeats 3] [--steps 400]
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

WARMUP, CALLS = 50, 2000


def _rank_main(out: str, steps: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    import fulmen as L

    torch.set_num_threads(1)

    class Logged(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
            self.clock = None

        def training_step(self, batch, batch_idx):
            if batch_idx == WARMUP:
                self.clock = time.perf_counter()
            loss = self.net(batch).pow(2).mean()
            self.log("a", loss.detach(), sync_dist=True)
            self.log("b", loss.detach() * 2, sync_dist=True)
            return loss

        def on_train_end(self):
            per_step = (time.perf_counter() - self.clock) / (steps - WARMUP - 1)
            strategy, value = self.trainer.strategy, torch.tensor(1.0)
            for _ in range(100):
                strategy.reduce(value)
            start = time.perf_counter()
            for _ in range(CALLS):
                strategy.reduce(value)
            per_reduce = (time.perf_counter() - start) / CALLS
            if self.global_rank == 0:
                with open(out, "w") as handle:
                    json.dump({"step_us": per_step * 1e6, "reduce_us": per_reduce * 1e6}, handle)

        def train_dataloader(self):
            return DataLoader(torch.randn(steps * 8, 32), batch_size=8)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    trainer.fit(Logged())


def _measure(on: bool, steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT", "NODE_RANK"):
            env.pop(key, None)
        env["FULMEN_DIVERGENCE_TIMEOUT"] = "30" if on else "0"
        subprocess.run([sys.executable, __file__, "--rank-main", out, str(steps)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as handle:
            return json.load(handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    step_ratios, reduce_ratios = [], []
    for repeat in range(args.repeats):
        off, on = _measure(False, args.steps), _measure(True, args.steps)
        step_ratios.append(on["step_us"] / off["step_us"])
        reduce_ratios.append(on["reduce_us"] / off["reduce_us"])
        print(f"pair {repeat}: step {off['step_us']:.0f} -> {on['step_us']:.0f} us (x{step_ratios[-1]:.3f}), "
              f"reduce {off['reduce_us']:.1f} -> {on['reduce_us']:.1f} us (+{on['reduce_us'] - off['reduce_us']:.1f} "
              f"us, x{reduce_ratios[-1]:.3f})", flush=True)
    print(f"median ratio detector on/off: per step x{statistics.median(step_ratios):.3f}, per reduce "
          f"x{statistics.median(reduce_ratios):.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-main":
        _rank_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
