"""Training step time of a `torch.compile`d LightningModule (inductor, CPU) against the same module in eager mode,
and a hand-written loop over the compiled model for reference, measured in the same run.

The model is a stack of pre-norm GELU-gated MLP blocks with RMSNorm, written out in tensor ops: elementwise work
that inductor fuses, so compiling matters. Each measurement runs in a fresh process on one thread; the runners
alternate; compilation happens in the warm-up steps, before the clock starts. Ratios are taken per round,
then the median, on the training thread's CPU time (wall time is printed too; on a shared machine it mostly
measures the neighbours). The compiled and eager runs must reach the same loss to float tolerance (inductor reorders
floating-point sums, so not bitwise).

    python bench/compile.py                  # 3 rounds
    python bench/compile.py --repeats 5 --steps 400
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

WIDTH, DEPTH, BATCH, FEATURES = 512, 4, 128, 64
WARMUP = 20  # steps before the clock starts: compilation (and recompilation for the last partial batch) happen here
RUNNERS = ("eager", "compiled", "plain_compiled")


def _build():
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = torch.randn(BATCH * 32, FEATURES)
    target = torch.randn(BATCH * 32, FEATURES)

    class Block(nn.Module):
        """RMSNorm and a GELU-gated MLP written out in tensor ops, as model code often is: many small elementwise
        kernels in eager mode, a few fused ones once compiled."""

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(FEATURES))
            self.gate = nn.Linear(FEATURES, WIDTH, bias=False)
            self.up = nn.Linear(FEATURES, WIDTH, bias=False)
            self.down = nn.Linear(WIDTH, FEATURES, bias=False)

        def forward(self, x):
            normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale
            gate = self.gate(normed)
            # tanh-approximated GELU, written out
            gelu = 0.5 * gate * (1.0 + torch.tanh(0.7978845608 * (gate + 0.044715 * gate * gate * gate)))
            return x + self.down(gelu * self.up(normed))

    torch.manual_seed(1)
    net = nn.Sequential(*[Block() for _ in range(DEPTH)])
    loader = DataLoader(TensorDataset(data, target), batch_size=BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(2), drop_last=True)
    return net, loader


def _clocks() -> tuple[float, float]:
    # Wall time, and the training thread's CPU time: on a shared machine the CPU time is what stays comparable.
    return time.perf_counter(), time.thread_time()


def _result(start: tuple[float, float], steps: int, loss) -> dict:
    wall, cpu = (now - then for now, then in zip(_clocks(), start))
    timed = steps - WARMUP
    return {"us_per_step": cpu / timed * 1e6, "wall_us_per_step": wall / timed * 1e6, "final_loss": loss.item()}


def run_plain_compiled(steps: int) -> dict:
    import torch
    from torch.nn import functional as F

    net, loader = _build()
    model = torch.compile(net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    step, start, loss = 0, 0.0, None
    while step < steps:
        batches = iter(loader)
        for _ in range(len(loader)):  # exactly len(loader) draws, as the Trainer does
            x, y = next(batches)
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == WARMUP:
                start = _clocks()
            if step >= steps:
                break
    return _result(start, steps, loss)


def run_fulmen(steps: int, compiled: bool) -> dict:
    import torch
    from torch.nn import functional as F

    import fulmen as L

    net, loader = _build()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self(x), y)
            self.last_loss = loss.detach()
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            if self.trainer.global_step == WARMUP:
                self.started = _clocks()
            elif self.trainer.global_step == steps:
                self.result = _result(self.started, steps, self.last_loss)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    module = Module()
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(torch.compile(module) if compiled else module, loader)
    assert trainer.global_step == steps
    return module.result


def _measure(runner: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", runner, "--steps", str(steps)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{runner} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--worker", choices=RUNNERS)
    args = parser.parse_args()
    if args.worker:
        result = (run_plain_compiled(args.steps) if args.worker == "plain_compiled"
                  else run_fulmen(args.steps, compiled=args.worker == "compiled"))
        print(json.dumps(result))
        return
    rounds = []
    for repeat in range(args.repeats):
        order = RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]
        rounds.append({runner: _measure(runner, args.steps) for runner in order})
    median = {runner: statistics.median(r[runner]["us_per_step"] for r in rounds) for runner in RUNNERS}
    wall = {runner: statistics.median(r[runner]["wall_us_per_step"] for r in rounds) for runner in RUNNERS}
    speedup = statistics.median(r["eager"]["us_per_step"] / r["compiled"]["us_per_step"] for r in rounds)
    overhead = statistics.median(r["compiled"]["us_per_step"] / r["plain_compiled"]["us_per_step"] for r in rounds)
    losses = rounds[0]
    same = all(abs(r["eager"]["final_loss"] - r["compiled"]["final_loss"]) <= 1e-3 * abs(r["eager"]["final_loss"])
               and abs(r["compiled"]["final_loss"] - r["plain_compiled"]["final_loss"])
               <= 1e-3 * abs(r["compiled"]["final_loss"]) for r in rounds)
    print(f"model: {DEPTH} RMSNorm + GELU-gated MLP blocks ({FEATURES}->{WIDTH}->{FEATURES}), batch {BATCH}, AdamW, "
          f"{args.steps} steps ({WARMUP} warm-up), 1 thread, {args.repeats} rounds; medians")
    print(f"{'':<16}{'CPU µs/step':>12}{'wall µs/step':>14}   final loss")
    for runner in RUNNERS:
        print(f"{runner:<16}{median[runner]:>12.1f}{wall[runner]:>14.1f}   {losses[runner]['final_loss']:.6f}")
    print(f"eager / compiled (fulmen, CPU time): {speedup:.2f}x")
    print(f"fulmen compiled / hand-written compiled loop (CPU time): {overhead:.3f}")
    print(f"same loss (rel. 1e-3): {same}")


if __name__ == "__main__":
    main()
