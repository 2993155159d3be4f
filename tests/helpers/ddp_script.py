"""A standalone script for the strategy="ddp" and torchrun tests: strategy="ddp" re-runs this file per rank.

    python ddp_script.py OUT_DIR full                    # 2 ranks: several fits, validate and predict
    python ddp_script.py OUT_DIR fail --fail-rank 1      # training_step raises on that rank at step 3
    python ddp_script.py OUT_DIR sigterm                 # trains slowly until the test sends SIGTERM
    python ddp_script.py OUT_DIR progress_sync           # progress bar + checkpointing + a sync_dist value
    python ddp_script.py OUT_DIR names                   # rank 1 sees taken checkpoint names that rank 0 does not
    python ddp_script.py OUT_DIR torchrun --devices 1 --num-nodes 2   # started by torchrun

Each rank writes `<tag>_<stage>_rank<r>.json` (see `DDPProbe`) and `extra_<scenario>_rank<r>.json` to
OUT_DIR. In "full", each local rank's stdout goes to `stdout_local<r>.txt` so the tests can tell who printed.
"""

import argparse
import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

import fulmen as L
from ddp_modules import DDPProbe, DivergingScoreProbe, IndexedDataset, ReversedSampler, ddp_trainer, make_loader
from fulmen.callbacks import EarlyStopping, ModelCheckpoint
from fulmen.checkpoint_io import CheckpointIO
from fulmen.loggers import CSVLogger
from fulmen.strategies import DDPStrategy
from torch.utils.data import DataLoader


class MarkingCheckpointIO(CheckpointIO):
    """Leaves `saved_by_rank<r>_<file name>` next to the run for every checkpoint this rank writes."""

    def __init__(self, marker_dir):
        super().__init__()
        self.marker_dir = marker_dir

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        name = f"saved_by_rank{dist.get_rank()}_{os.path.basename(path)}"
        with open(os.path.join(self.marker_dir, name), "w"):
            pass
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)


def child_pids():
    """Processes whose parent is this one, read from /proc (no psutil)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.append(int(entry))
    return children


trainer = ddp_trainer


def write_extra(out_dir, scenario, rank, extra):
    with open(os.path.join(out_dir, f"extra_{scenario}_rank{rank}.json"), "w") as file:
        json.dump(extra, file)


def run_full(out_dir):
    root = os.path.join(out_dir, "root")
    main = trainer(root, logger=CSVLogger(root), enable_checkpointing=True,
                   callbacks=[ModelCheckpoint()], plugins=[MarkingCheckpointIO(out_dir)])
    model = DDPProbe(out_dir, "main", check_collectives=True)
    main.fit(model, make_loader())
    rank = main.global_rank
    main.validate(model, make_loader(7, batch_size=2), verbose=False)
    predictions = main.predict(model, make_loader(5, batch_size=2))

    accumulate = trainer(out_dir, accumulate_grad_batches=2)
    accumulate.fit(DDPProbe(out_dir, "accumulate"), make_loader())

    early_stopping = EarlyStopping(monitor="score", patience=1, mode="min")
    checkpoint = ModelCheckpoint(dirpath=os.path.join(out_dir, "es_checkpoints"), monitor="score", mode="min",
                                 save_top_k=1)
    stopping = trainer(out_dir, max_epochs=5, enable_checkpointing=True, callbacks=[early_stopping, checkpoint])
    stopping.fit(DivergingScoreProbe(out_dir, "earlystop"), make_loader())

    wrapped_sampler = ReversedSampler()
    # The one run with a progress bar: it logs no sync_dist value (see the "progress_sync" scenario).
    trainer(out_dir, enable_progress_bar=True).fit(DDPProbe(out_dir, "custom_sampler", log_sync=False),
                         DataLoader(IndexedDataset(), batch_size=4, sampler=wrapped_sampler))
    kept_sampler = ReversedSampler()
    trainer(out_dir, use_distributed_sampler=False).fit(
        DDPProbe(out_dir, "own_sampler"), DataLoader(IndexedDataset(), batch_size=4, sampler=kept_sampler))

    write_extra(out_dir, "full", rank, {
        "launcher": type(main.strategy.launcher).__name__,
        "predictions": [batch.tolist() for batch in predictions],
        "stopped_epoch": early_stopping.stopped_epoch, "stop_current_epoch": stopping.current_epoch,
        "best_model_path": checkpoint.best_model_path, "wrapped_sampler_epochs": wrapped_sampler.epochs,
        "kept_sampler_epochs": kept_sampler.epochs, "log_dir": main.logger.log_dir if rank == 0 else None,
    })


def run_torchrun(out_dir, devices, num_nodes):
    run = trainer(out_dir, devices=devices, num_nodes=num_nodes)
    run.fit(DDPProbe(out_dir, "torchrun", check_collectives=True), make_loader())
    write_extra(out_dir, "torchrun", run.global_rank, {
        "launcher": None if run.strategy.launcher is None else type(run.strategy.launcher).__name__,
        "environment": type(run.strategy.cluster_environment).__name__,
        "child_pids": child_pids(), "pid": os.getpid(), "parent_pid": os.getppid(),
        "env": {key: os.environ.get(key) for key in ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE")},
    })


def run_progress_sync(out_dir):
    # The defaults of a plain Trainer (progress bar, checkpointing) plus one sync_dist value. A short
    # collective timeout turns a deadlock between the ranks into an error instead of a hang.
    strategy = DDPStrategy(parallel_devices=[torch.device("cpu")] * 2, timeout=timedelta(seconds=5))
    run = trainer(out_dir, strategy=strategy, enable_progress_bar=True, enable_checkpointing=True, max_epochs=1)
    run.fit(DDPProbe(out_dir, "progress_sync"), make_loader())


class StaleView(L.Callback):
    """On rank 1 only, `os.path.exists` also reports `names` in `directory` as existing: the view of a node
    whose directory listing lags behind (or runs ahead of) rank 0's."""

    def __init__(self, directory, names):
        self.phantoms = {os.path.join(directory, name) for name in names}

    def setup(self, trainer, pl_module, stage):
        if trainer.global_rank == 1:
            real_exists = os.path.exists
            os.path.exists = lambda path: os.fspath(path) in self.phantoms or real_exists(path)


def run_names(out_dir):
    directory = os.path.join(out_dir, "names_checkpoints")
    checkpoint = ModelCheckpoint(dirpath=directory, save_top_k=-1, save_last=True)
    stale = StaleView(directory, ["epoch=0-step=4.ckpt", "last.ckpt"])
    run = trainer(out_dir, max_epochs=1, enable_checkpointing=True, callbacks=[stale, checkpoint])
    run.fit(DDPProbe(out_dir, "names"), make_loader())
    write_extra(out_dir, "names", run.global_rank, {
        "best_model_path": checkpoint.best_model_path, "last_model_path": checkpoint.last_model_path})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("scenario", choices=["full", "fail", "sigterm", "progress_sync", "torchrun", "names"])
    parser.add_argument("--fail-rank", type=int, default=1)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--num-nodes", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.scenario == "full":
        sys.stdout = open(os.path.join(args.out_dir, f"stdout_local{os.environ.get('LOCAL_RANK', '0')}.txt"), "w",
                          buffering=1)
        run_full(args.out_dir)
    elif args.scenario == "fail":
        trainer(args.out_dir).fit(DDPProbe(args.out_dir, "fail", fail_at_step=(args.fail_rank, 3)), make_loader())
    elif args.scenario == "sigterm":
        trainer(args.out_dir, max_epochs=1000).fit(DDPProbe(args.out_dir, "sigterm", step_sleep=0.05), make_loader())
    elif args.scenario == "progress_sync":
        run_progress_sync(args.out_dir)
    elif args.scenario == "names":
        run_names(args.out_dir)
    else:
        run_torchrun(args.out_dir, args.devices, args.num_nodes)


if __name__ == "__main__":
    main()
