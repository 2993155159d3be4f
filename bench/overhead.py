"""Per-step overhead of fulmen's Trainer against a hand-written PyTorch loop, measured in the same run.

Each measurement runs in a fresh process (one thread); fulmen and the plain loop alternate, and the
ratio is taken per pair, then the median. Both loops use the same seed and data order, and must
reach the same final loss (otherwise they would not be doing the same work).

    python bench/overhead.py                 # all cases, 5 pairs each
    python bench/overhead.py --case plain --repeats 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CASES = {
    # name: (hidden width, steps, validate every epoch, Trainer defaults vs. a loop doing the same work)
    "plain": (64, 3000, False, False),
    "with_validation": (64, 3000, True, False),
    "compute_bound": (1024, 300, False, False),
    # Progress bar with the loss, TensorBoard scalar every 50 steps, model summary, a checkpoint per epoch.
    "defaults": (64, 3000, False, True),
}
NUM_TRAIN, NUM_VAL, BATCH = 1024, 256, 32
# Steps before the clock starts: one-off costs (imports torch does on first optimizer use, setup)
# are not per-step overhead. Both loops start timing at the same step.
WARMUP = 100


def _build(width: int):
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = torch.randn(NUM_TRAIN + NUM_VAL, 32)
    labels = torch.randint(0, 10, (NUM_TRAIN + NUM_VAL,))
    train = TensorDataset(data[:NUM_TRAIN], labels[:NUM_TRAIN])
    val = TensorDataset(data[NUM_TRAIN:], labels[NUM_TRAIN:])
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(1))
    val_loader = DataLoader(val, batch_size=128)
    torch.manual_seed(2)
    layers = [nn.Linear(32, width), nn.ReLU()]
    if width > 64:
        layers += [nn.Linear(width, width), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(width, 10))
    return net, train_loader, val_loader


def run_plain(width: int, steps: int, validate: bool, defaults: bool, workdir: str) -> dict:
    import torch
    from torch.nn import functional as F

    net, train_loader, val_loader = _build(width)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step, loss, start = 0, None, 0.0
    if defaults:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        writer = SummaryWriter(f"{workdir}/tb")
        bar = tqdm(total=steps, file=sys.stdout)
    while step < steps:
        net.train()
        # Draw exactly len(loader) batches: exhausting the loader would make a seeded RandomSampler
        # draw one more permutation, shifting every later epoch's order (fulmen and Lightning never do).
        batches = iter(train_loader)
        for _ in range(len(train_loader)):
            x, y = next(batches)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if defaults:
                # What a hand-written loop with a bar and TensorBoard typically does.
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
                if step % 50 == 0:
                    writer.add_scalar("loss", loss.item(), step)
            if step == WARMUP:
                start = time.perf_counter()
            if step >= steps:
                break
        if defaults:
            torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict()}, f"{workdir}/last.pt")
        if validate and step % len(train_loader) == 0:
            net.eval()
            with torch.inference_mode():
                for x, y in val_loader:
                    F.cross_entropy(net(x), y)
    elapsed = time.perf_counter() - start
    if defaults:
        bar.close()
        writer.close()
    return {"us_per_step": elapsed / (steps - WARMUP) * 1e6, "final_loss": loss.item()}


def run_fulmen(width: int, steps: int, validate: bool, defaults: bool, workdir: str,
               after_fit: Any = None, **trainer_flags: Any) -> dict:
    """The same training with fulmen; `trainer_flags` go to the Trainer (the benches of single features turn
    one on), `after_fit(trainer)` may check the run."""
    import torch
    from torch.nn import functional as F

    import fulmen as L

    net, train_loader, val_loader = _build(width)

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.last_loss = loss.detach()
            if defaults:
                self.log("loss", loss, prog_bar=True)
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            # Same point as the plain loop's clock: right after the WARMUP-th optimizer step.
            if self.trainer.global_step == WARMUP:
                self.started = time.perf_counter()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    if validate:
        def validation_step(self, batch, batch_idx):
            x, y = batch
            F.cross_entropy(self.net(x), y)

        Module.validation_step = validation_step

    module = Module()
    if defaults:
        trainer = L.Trainer(max_steps=steps, max_epochs=-1, default_root_dir=workdir, num_sanity_val_steps=0,
                            **trainer_flags)
    else:
        trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            **trainer_flags)
    trainer.fit(module, train_loader, val_loader if validate else None)
    elapsed = time.perf_counter() - module.started
    assert trainer.global_step == steps
    if after_fit is not None:
        after_fit(trainer)
    return {"us_per_step": elapsed / (steps - WARMUP) * 1e6, "final_loss": module.last_loss.item()}


def measure_worker(script: str, runner: str, case: str, *options: str) -> dict:
    """Run `script --worker RUNNER --case CASE [options]` in a fresh process; its last stdout line (JSON)."""
    done = subprocess.run([sys.executable, script, "--worker", runner, "--case", case, *options],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{runner} worker for {case!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(runner: str, case: str) -> dict:
    return measure_worker(__file__, runner, case)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=("plain", "fulmen"))
    args = parser.parse_args()
    cases = args.case or list(CASES)
    if args.worker:
        runner = run_plain if args.worker == "plain" else run_fulmen
        with tempfile.TemporaryDirectory() as workdir:
            print(json.dumps(runner(*CASES[cases[0]], workdir)))
        return
    print(f"{'case':<16}{'plain µs/step':>15}{'fulmen µs/step':>16}{'overhead µs':>13}{'ratio':>8}  same loss")
    for case in cases:
        pairs = []
        for repeat in range(args.repeats):
            order = ("plain", "fulmen") if repeat % 2 == 0 else ("fulmen", "plain")
            results = {runner: _measure(runner, case) for runner in order}
            pairs.append((results["plain"], results["fulmen"]))
        plain = statistics.median(p["us_per_step"] for p, _ in pairs)
        ours = statistics.median(f["us_per_step"] for _, f in pairs)
        ratio = statistics.median(f["us_per_step"] / p["us_per_step"] for p, f in pairs)
        same = all(abs(p["final_loss"] - f["final_loss"]) <= 1e-6 * max(1.0, abs(p["final_loss"])) for p, f in pairs)
        print(f"{case:<16}{plain:>15.1f}{ours:>16.1f}{ours - plain:>13.1f}{ratio:>8.3f}  {same} "
              f"(final loss {pairs[0][0]['final_loss']:.6f} vs {pairs[0][1]['final_loss']:.6f})")


if __name__ == "__main__":
    main()
