"""Memory per process under DDP, FSDP and model parallelism: the same model, 2 processes (gloo on CPU).

For each strategy one short fit (Adam, 2 steps) runs in its own job; every rank reports the bytes it holds for
parameters, gradients and optimizer state (the local shards of DTensors) and its peak resident memory. The
sharded strategies build the model under `trainer.init_module(empty_init=True)` (meta device), as one would.

    python bench/memory_per_strategy.py             # prints a markdown table
    python bench/memory_per_strategy.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

STRATEGIES = ("ddp", "fsdp", "mp_2x1", "mp_1x2")
WIDTH, HIDDEN, DEPTH = 1024, 4096, 4  # 4 blocks of Linear(1024, 4096) + Linear(4096, 1024): 33.6 M parameters


def _local_bytes(tensor) -> int:
    tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return tensor.numel() * tensor.element_size()


def _run_rank(name: str, out: str) -> None:
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as L
    from fulmen.strategies import DDPStrategy, FSDPStrategy, ModelParallelStrategy

    torch.set_num_threads(1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(WIDTH, HIDDEN)
            self.w2 = nn.Linear(HIDDEN, WIDTH)

        def forward(self, x):
            return x + self.w2(F.gelu(self.w1(x)))

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
            self.measured = {}

        def configure_model(self):
            if not name.startswith("mp"):
                return
            from torch.distributed.fsdp import fully_shard
            from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

            tp, dp = self.device_mesh["tensor_parallel"], self.device_mesh["data_parallel"]
            for block in self.blocks:
                parallelize_module(block, tp, {"w1": ColwiseParallel(), "w2": RowwiseParallel()})
                fully_shard(block, mesh=dp)
            fully_shard(self.blocks, mesh=dp)

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self.blocks(batch[0]), batch[0])

        def on_before_optimizer_step(self, optimizer):
            self.measured["parameters"] = sum(_local_bytes(p) for p in self.parameters())
            self.measured["gradients"] = sum(_local_bytes(p.grad) for p in self.parameters() if p.grad is not None)

        def on_train_end(self):
            state = self.trainer.optimizers[0].state.values()
            self.measured["optimizer"] = sum(_local_bytes(v) for s in state for v in s.values()
                                             if torch.is_tensor(v) and v.dim() > 0)
            self.measured["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-4)

    strategy = {"ddp": DDPStrategy(), "fsdp": FSDPStrategy(auto_wrap_policy={Block}),
                "mp_2x1": ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
                "mp_1x2": ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=2)}[name]
    data = TensorDataset(torch.randn(64, WIDTH, generator=torch.Generator().manual_seed(0)))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with trainer.init_module(empty_init=name != "ddp"):  # sharded strategies: built on the meta device
        model = Model()
    trainer.fit(model, DataLoader(data, batch_size=8))
    gathered = [trainer.strategy.broadcast(model.measured, src) for src in range(trainer.world_size)]
    if trainer.global_rank == 0:
        with open(out, "w") as handle:
            json.dump(gathered, handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rank-job", nargs=2, metavar=("STRATEGY", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_job:  # the strategy's launcher re-runs this same command line for the other rank
        _run_rank(*args.rank_job)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in STRATEGIES:
            out = os.path.join(tmp, f"{name}.json")
            # mp_1x2 may abort at interpreter exit ("terminate called without an active exception", after the
            # fit and the report): the report file, not the exit status, says whether the job ran
            subprocess.run([sys.executable, os.path.abspath(__file__), "--rank-job", name, out],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
            with open(out) as handle:
                results[name] = json.load(handle)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    mb = 1e6
    print("| strategy | parameters | gradients | optimizer state | total | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, ranks in results.items():
        worst = max(ranks, key=lambda r: r["parameters"] + r["gradients"] + r["optimizer"])
        total = worst["parameters"] + worst["gradients"] + worst["optimizer"]
        print(f"| {name} | {worst['parameters'] / mb:.1f} MB | {worst['gradients'] / mb:.1f} MB | "
              f"{worst['optimizer'] / mb:.1f} MB | {total / mb:.1f} MB | "
              f"{max(r['peak_rss'] for r in ranks) / mb:.0f} MB |")


if __name__ == "__main__":
    main()
