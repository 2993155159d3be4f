"""Module, data and a plain-PyTorch reference loop shared by the DDP tests.

`DDPProbe` records what each rank saw (dataset indices per epoch, losses, collectives, ranks) and
writes it to `<out_dir>/<tag>_<stage>_rank<global_rank>.json` in `teardown`, so both the script
launched by strategy="ddp" (`ddp_script.py`) and spawned ranks ("ddp_spawn") report back the same way.
Classes live at module level so "ddp_spawn" can pickle them.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

import fulmen as L

NUM_FEATURES = 32
NUM_OUTPUTS = 2
NUM_SAMPLES = 32
BATCH_SIZE = 4  # 2 ranks x 4 batches of 4 per epoch
LR = 0.1
WORLD_SIZE = 2
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_script.py")
_LAUNCH_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
                     "MASTER_PORT", "PL_GLOBAL_SEED", "PL_SEED_WORKERS")


class IndexedDataset(Dataset):
    """Fixed random regression pairs; an item is `(index, x, y)` so each rank can report what it saw."""

    def __init__(self, num_samples=NUM_SAMPLES, seed=7):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(num_samples, NUM_FEATURES, generator=generator)
        self.y = torch.randn(num_samples, NUM_OUTPUTS, generator=generator)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return torch.tensor(index), self.x[index], self.y[index]


def make_loader(num_samples=NUM_SAMPLES, batch_size=BATCH_SIZE, **kwargs):
    return DataLoader(IndexedDataset(num_samples), batch_size=batch_size, **kwargs)


class ReversedSampler(Sampler):
    """A user sampler (last index first) that remembers the epochs `set_epoch` was called with."""

    def __init__(self, num_samples=NUM_SAMPLES):
        self.num_samples = num_samples
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(range(self.num_samples - 1, -1, -1))

    def __len__(self):
        return self.num_samples


def make_layer():
    """The same Linear(32, 2) in every process, without touching the global RNG."""
    layer = nn.Linear(NUM_FEATURES, NUM_OUTPUTS)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.2)
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.2)
    return layer


def make_batchnorm_net():
    """Linear(32, 4) -> BatchNorm1d(4) -> Linear(4, 2), the same in every process (seeded, global RNG untouched)."""
    net = nn.Sequential(nn.Linear(NUM_FEATURES, 4), nn.BatchNorm1d(4), nn.Linear(4, NUM_OUTPUTS))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return net


def _plain(value):
    return getattr(value, "value", value)


def _to_json(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


class DDPProbe(L.LightningModule):
    """Linear(32, 2), MSE, SGD; records per rank what it saw and what the collectives returned.

    Args:
        out_dir: where `teardown` writes this rank's JSON (nothing is written when None).
        tag: prefix of the JSON file names, one per trainer run.
        check_collectives: exercise all_gather/broadcast/reduce in `on_train_start`.
        fail_at_step: `(global_rank, global_step)` at which `training_step` raises.
        step_sleep: seconds to sleep in each `training_step` (to catch a run mid-training).
        log_sync: also log `loss_sync` with `sync_dist=True` (next to the unsynced `loss_local`).
    """

    def __init__(self, out_dir=None, tag="fit", check_collectives=False, fail_at_step=None, step_sleep=0.0,
                 log_sync=True):
        super().__init__()
        self.layer = make_layer()
        self.out_dir = out_dir
        self.tag = tag
        self.check_collectives = check_collectives
        self.fail_at_step = fail_at_step
        self.step_sleep = step_sleep
        self.log_sync = log_sync
        self.record = {"train_indices": {}, "train_losses": {}, "val_indices": [], "predict_indices": [],
                       "prepare_data_calls": 0, "setup_calls": 0, "grad_sums": []}

    def forward(self, x):
        return self.layer(x)

    def prepare_data(self):
        self.record["prepare_data_calls"] += 1

    def setup(self, stage):
        self.record["setup_calls"] += 1

    def on_train_start(self):
        if self.out_dir is not None:
            with open(os.path.join(self.out_dir, f"{self.tag}_pid_rank{self.global_rank}"), "w") as file:
                file.write(str(os.getpid()))
        if self.check_collectives:
            self._check_collectives()

    def _check_collectives(self):
        rank = self.global_rank
        strategy = self.trainer.strategy
        scalar = self.all_gather(torch.tensor(float(rank)))
        nested = self.all_gather({"a": torch.tensor(rank), "b": {"c": torch.full((3,), rank)}})
        self.record["collectives"] = {
            "scalar": scalar, "scalar_shape": list(scalar.shape),
            "nested_a": nested["a"], "nested_a_shape": list(nested["a"].shape),
            "nested_c": nested["b"]["c"], "nested_c_shape": list(nested["b"]["c"].shape),
            "broadcast_from_1": strategy.broadcast({"sender": rank, "text": f"hello from {rank}"}, src=1),
            "reduce_default": strategy.reduce(torch.tensor(float(rank + 1))),
            "reduce_sum": strategy.reduce(torch.tensor(float(rank + 1)), reduce_op="sum"),
        }

    def training_step(self, batch, batch_idx):
        if self.fail_at_step is not None and tuple(self.fail_at_step) == (self.global_rank, self.global_step):
            raise RuntimeError(f"probe failure on rank {self.global_rank} at step {self.global_step}")
        if self.step_sleep:
            time.sleep(self.step_sleep)
        index, x, y = batch
        loss = F.mse_loss(self(x), y)
        epoch = str(self.current_epoch)
        self.record["train_indices"].setdefault(epoch, []).extend(index.tolist())
        self.record["train_losses"].setdefault(epoch, []).append(loss.item())
        if self.log_sync:
            self.log("loss_sync", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("loss_local", loss, on_step=False, on_epoch=True)
        return loss

    def on_after_backward(self):
        # Under DDP these gradients are already averaged over ranks, unless the batch only accumulates.
        self.record["grad_sums"].append(self.layer.weight.grad.sum().item())

    def validation_step(self, batch, batch_idx):
        index, x, y = batch
        self.record["val_indices"].extend(index.tolist())
        self.log("val_loss", F.mse_loss(self(x), y), sync_dist=True)
        self.log("val_count", float(len(index)), reduce_fx="sum", sync_dist=True)

    def predict_step(self, batch, batch_idx):
        index = batch[0]
        self.record["predict_indices"].extend(index.tolist())
        return index

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)

    def teardown(self, stage):
        if self.out_dir is None:
            return
        trainer = self.trainer
        report = dict(self.record)
        report.update({
            "stage": _plain(stage),
            "weights": dict(self.state_dict()),
            "callback_metrics": dict(trainer.callback_metrics),
            "global_step": trainer.global_step, "current_epoch": trainer.current_epoch,
            "world_size": trainer.world_size, "global_rank": trainer.global_rank, "local_rank": trainer.local_rank,
            "node_rank": trainer.node_rank, "num_nodes": trainer.num_nodes, "num_devices": trainer.num_devices,
            "is_global_zero": trainer.is_global_zero,
            "module_ranks": [self.global_rank, self.local_rank],
            "pid": os.getpid(), "parent_pid": os.getppid(),
        })
        bar = trainer.progress_bar_callback
        report["progress_bar_enabled"] = None if bar is None else bool(getattr(bar, "is_enabled", True))
        path = os.path.join(self.out_dir, f"{self.tag}_{_plain(stage)}_rank{trainer.global_rank}.json")
        with open(path, "w") as file:
            json.dump(_to_json(report), file)


class DivergingScoreProbe(DDPProbe):
    """Logs `score` without sync_dist: improving on rank 0 (1, 1/2, 1/3, ...), flat 1.0 on rank 1."""

    def on_train_epoch_end(self):
        score = 1.0 / (self.current_epoch + 1) if self.global_rank == 0 else 1.0
        self.log("score", score)


def load_reports(out_dir, tag, stage="fit", world_size=WORLD_SIZE):
    """The JSON reports of every rank, in rank order."""
    reports = []
    for rank in range(world_size):
        with open(os.path.join(out_dir, f"{tag}_{stage}_rank{rank}.json")) as file:
            reports.append(json.load(file))
    return reports


def report_weights(report):
    return {name: torch.tensor(value) for name, value in report["weights"].items()}


def rank_shards(num_samples, epoch, world_size=WORLD_SIZE, seed=0):
    """The indices `DistributedSampler(shuffle=True, seed)` gives each rank in `epoch`."""
    shards = []
    for rank in range(world_size):
        sampler = DistributedSampler(range(num_samples), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    return shards


def reference_fit(max_epochs, accumulate_grad_batches=1, world_size=WORLD_SIZE, num_samples=NUM_SAMPLES,
                  batch_size=BATCH_SIZE, seed=0):
    """Single-process SGD over the same global batches DDP sees: both ranks' step batches, per-rank mean loss averaged.

    With accumulation the loss is divided by `accumulate_grad_batches` and the optimizer steps every
    `accumulate_grad_batches` batches and at the end of each epoch.
    """
    dataset = IndexedDataset(num_samples)
    layer = make_layer()
    optimizer = torch.optim.SGD(layer.parameters(), lr=LR)
    for epoch in range(max_epochs):
        shards = rank_shards(num_samples, epoch, world_size, seed)
        num_batches = -(-len(shards[0]) // batch_size)
        for batch_idx in range(num_batches):
            rank_losses = []
            for shard in shards:
                indices = shard[batch_idx * batch_size:(batch_idx + 1) * batch_size]
                rank_losses.append(F.mse_loss(layer(dataset.x[indices]), dataset.y[indices]))
            loss = torch.stack(rank_losses).mean() / accumulate_grad_batches
            loss.backward()
            if (batch_idx + 1) % accumulate_grad_batches == 0 or batch_idx + 1 == num_batches:
                optimizer.step()
                optimizer.zero_grad()
    return {f"layer.{name}": value.detach().clone() for name, value in layer.state_dict().items()}


def run_in_session(command, timeout):
    """Run `command` (environment: `script_env()`) in a session of its own to the end; whatever it started is killed
    afterwards, also on a timeout. Returns (returncode, stdout, stderr)."""
    proc = subprocess.Popen(command, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        kill_session(proc)
    return proc.returncode, stdout, stderr


def kill_session(proc):
    """Kill `proc`'s session (the ranks a launcher started share it) and reap `proc`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def script_env():
    """This environment minus any launcher variables (the script starts a fresh job), one thread per process."""
    env = {key: value for key, value in os.environ.items()
           if key not in _LAUNCH_VARIABLES and not key.startswith(("SLURM_", "TORCHELASTIC_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def script_command(out_dir, *args):
    return [sys.executable, SCRIPT, str(out_dir), *map(str, args)]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_trainer(out_dir, **flags):
    """A 2-process CPU Trainer writing under `out_dir`, quiet (no logger, checkpointing, bar or summary) unless asked."""
    defaults = dict(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, default_root_dir=out_dir,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    defaults.update(flags)
    return L.Trainer(**defaults)
