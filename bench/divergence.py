"""Cost of the DDP divergence detector: 2 processes (strategy="ddp", gloo on CPU), detector on (default) vs off
(`FULMEN_DIVERGENCE_TIMEOUT=0`), alternating runs, one thread per process.

Measured on rank 0 as CPU time of its process (the watchdog thread included; other load on the machine excluded):
per-step time of a training loop that logs two `sync_dist=True` values per step (after warm-up),
and the time of one `strategy.reduce` of a scalar (2000 calls after training), on vs off.

    python bench/divergence.py [--repeats 3] [--steps 400]
    python bench/divergence.py --micro     # the detector's own cost per collective, one process
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
                self.clock = time.process_time()
            loss = self.net(batch).pow(2).mean()
            self.log("a", loss.detach(), sync_dist=True)
            self.log("b", loss.detach() * 2, sync_dist=True)
            return loss

        def on_train_end(self):
            per_step = (time.process_time() - self.clock) / (steps - WARMUP - 1)
            strategy, value = self.trainer.strategy, torch.tensor(1.0)
            for _ in range(100):
                strategy.reduce(value)
            start = time.process_time()
            for _ in range(CALLS):
                strategy.reduce(value)
            per_reduce = (time.process_time() - start) / CALLS
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


def micro(calls: int = 20000, rounds: int = 9) -> None:
    """The detector's own cost per collective, without the noise of a second process: one gloo process, the same
    `strategy.reduce` / `barrier` / `reduce_boolean_decision` plain and numbered (+ in-band check), alternating."""
    import torch
    import torch.distributed as dist

    from fulmen.debug.divergence import DivergenceDetector
    from fulmen.strategies import DDPStrategy
    from fulmen.trainer.state import TrainerState

    torch.set_num_threads(1)
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    plain = DDPStrategy()
    numbered = DDPStrategy()
    detector = DivergenceDetector(dist.PrefixStore("bench/", store), 0, 1, 30.0, TrainerState())
    detector.install(numbered)
    value = torch.tensor(1.0)
    calls_of = {"reduce": lambda s: s.reduce(value), "barrier": lambda s: s.barrier(),
                "reduce_boolean_decision": lambda s: s.reduce_boolean_decision(True)}
    for name, call in calls_of.items():
        costs = {"plain": [], "numbered": []}
        for _ in range(rounds):
            for label, strategy in (("plain", plain), ("numbered", numbered)):
                start = time.process_time()  # CPU time of this process: other load on the machine does not count
                for _ in range(calls):
                    call(strategy)
                costs[label].append((time.process_time() - start) / calls * 1e6)
        base, on = min(costs["plain"]), min(costs["numbered"])
        print(f"{name}: plain {base:.1f} us, numbered {on:.1f} us per call (+{on - base:.1f} us, min of {rounds})")
    detector.stop()
    dist.destroy_process_group()


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
    elif len(sys.argv) > 1 and sys.argv[1] == "--micro":
        micro()
    else:
        main()
