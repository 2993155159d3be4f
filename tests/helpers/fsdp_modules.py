"""Modules, data and the single-process reference for the FSDP tests (`fsdp_script.py` and test_fsdp*.py).

The training sampler shuffles (seed 0, as Lightning's distributed sampler does for training); 2 ranks with
batches of 4 get positions r, r+2, ... of the same permutation one process gets, so global batch b is the same
8 samples as one process's batch b of 8; the loss is a mean, so the updates agree.
"""

import os
import resource
import sys

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import fulmen as L

NUM_FEATURES = 8
NUM_SAMPLES = 32
GLOBAL_BATCH = 8
LR = 0.1
MOMENTUM = 0.9


def make_data(num_features=NUM_FEATURES, num_samples=NUM_SAMPLES):
    generator = torch.Generator().manual_seed(7)
    return torch.randn(num_samples, num_features, generator=generator), torch.randn(num_samples, 2,
                                                                                   generator=generator)


def make_loader(devices, num_features=NUM_FEATURES):
    x, y = make_data(num_features)
    return DataLoader(TensorDataset(x, y), batch_size=GLOBAL_BATCH // devices, shuffle=False)


def single_process_loader():
    """Batches of 8 in the order the distributed sampler gives (what a plain one-process run needs to match)."""
    dataset = TensorDataset(*make_data())
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    return DataLoader(dataset, batch_size=GLOBAL_BATCH, sampler=sampler)


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inner = nn.Linear(width, 12)
        self.outer = nn.Linear(12, width)

    def forward(self, x):
        return x + self.outer(torch.tanh(self.inner(x)))


def make_net():
    """Two residual blocks and a head, the same in every process (seeded, global RNG untouched)."""
    net = nn.Sequential(Block(NUM_FEATURES), Block(NUM_FEATURES), nn.Linear(NUM_FEATURES, 2))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return net


class FSDPNet(L.LightningModule):
    """MSE regression with SGD + momentum (so optimizer state matters on resume); records what it saw."""

    def __init__(self, check_collectives=False):
        super().__init__()
        self.net = make_net()
        self.check_collectives = check_collectives
        self.seen = []
        self.collectives = {}
        self.sharded_numel = None
        self.optimizer_is_dtensor = None

    def forward(self, x):
        return self.net(x)

    def on_train_start(self):
        self.sharded_numel = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel()
                                 for p in self.parameters())
        if self.check_collectives:
            rank = torch.tensor(float(self.global_rank))
            self.collectives = {
                "all_gather": self.all_gather(rank).tolist(),
                "reduce_sum": float(self.trainer.strategy.reduce(rank + 1, reduce_op="sum")),
                "broadcast": self.trainer.strategy.broadcast(f"from {self.global_rank}"),
                "world_size": self.trainer.world_size,
            }
            self.trainer.strategy.barrier()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, sync_dist=True, on_step=False, on_epoch=True)
        self.seen.append(x[:, 0].tolist())
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y), sync_dist=True)

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)
        self.optimizer_is_dtensor = all(hasattr(p, "to_local") for g in optimizer.param_groups for p in g["params"])
        return optimizer


def epoch_order(epoch):
    sampler = DistributedSampler(range(NUM_SAMPLES), num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(epoch)
    return list(sampler)


def reference_fit(max_epochs, clip=None, accumulate=1):
    """One process, global batches of 8, the same SGD; returns the state dict with the LightningModule's keys
    (and the momentum buffers, by parameter index)."""
    x, y = make_data()
    net = make_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    num_batches = NUM_SAMPLES // GLOBAL_BATCH
    for epoch in range(max_epochs):
        order = epoch_order(epoch)
        for batch_idx in range(num_batches):
            part = order[batch_idx * GLOBAL_BATCH:(batch_idx + 1) * GLOBAL_BATCH]
            (F.mse_loss(net(x[part]), y[part]) / accumulate).backward()
            if (batch_idx + 1) % accumulate == 0 or batch_idx + 1 == num_batches:
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad()
    state = {f"net.{key}": value.detach().clone() for key, value in net.state_dict().items()}
    return state, optimizer.state_dict()


class BigNet(L.LightningModule):
    """A stack of wide Linear layers (WIDTH x WIDTH float32 each) for the meta-device test."""

    WIDTH = 1024
    DEPTH = 8  # 8 x 4 MiB of float32 weights

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(self.WIDTH, self.WIDTH) for _ in range(self.DEPTH)])
        self.head = nn.Linear(self.WIDTH, 2)
        self.local_bytes = None
        self.peak_rss_kb = None
        self.finite = None

    def forward(self, x):
        return self.head(self.layers(x))

    def on_train_start(self):
        self.local_bytes = sum((p.to_local() if hasattr(p, "to_local") else p).nbytes for p in self.parameters())
        self.finite = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
                          for p in self.parameters())

    def on_train_end(self):
        self.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Configured(FSDPNet):
    """FSDPNet whose net is made in `configure_model` (which sets its values in place: it cannot stay on meta)."""

    def __init__(self):
        L.LightningModule.__init__(self)
        self.net = None
        self.seen, self.collectives, self.check_collectives = [], {}, False

    def configure_model(self):
        if self.net is None:
            self.net = make_net()


class WideNet(L.LightningModule):
    """DEPTH torch Linear layers of WIDTH x WIDTH float32 (512 MiB in all), made in `configure_model`; with
    `set_values` it also zeroes a bias there, which keeps the build off the meta device (for the comparison)."""

    WIDTH = 4096
    DEPTH = 8

    def __init__(self, set_values=False):
        super().__init__()
        self.set_values = set_values
        self.layers = None
        self.built_on = None

    def _layers(self):
        return nn.Sequential(*[nn.Linear(self.WIDTH, self.WIDTH) for _ in range(self.DEPTH)])

    def configure_model(self):
        if self.layers is None:
            self.layers = self._layers()
            if self.set_values:
                torch.nn.init.zeros_(self.layers[0].bias)
        self.built_on = str(next(self.layers.parameters()).device)

    def training_step(self, batch, batch_idx):
        return self.layers(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class PeakMemory(L.Callback):
    """Peak resident memory growth from `setup` (just before `configure_model`) to `on_fit_start` (sharded and
    initialised): the kernel's high-water mark is reset at `setup`, so the rest of the process's life is left out."""

    def setup(self, trainer, pl_module, stage):
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM to the current resident size
        self.start_kb = _status_kb("VmRSS")

    def on_fit_start(self, trainer, pl_module):
        self.growth_bytes = (_status_kb("VmHWM") - self.start_kb) * 1024


def _status_kb(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def can_measure_peak_memory():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status_kb("VmHWM") > 0
    except OSError:
        return False


# -- running the job and reading its results (the tests) ------------------------------------------------------

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fsdp_script.py")


def run_script(out_dir, *args, timeout=240, returncode=0):
    try:
        from helpers.ddp_modules import run_in_session
    except ImportError:  # imported by fsdp_script.py, which has helpers/ itself on its path
        from ddp_modules import run_in_session
    code, _, stderr = run_in_session([sys.executable, SCRIPT, str(out_dir), *args], timeout)
    assert code == returncode, stderr[-4000:]


def result(out_dir, name):
    return torch.load(out_dir / f"{name}.pt", weights_only=False)


def assert_state_close(state, expected, atol=1e-5):
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(state[key].float(), value, atol=atol, rtol=1e-4, msg=key)
