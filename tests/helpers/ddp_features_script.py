"""One strategy="ddp" job (2 CPU ranks, gloo) exercising DDP features; `test_ddp_features.py` reads the reports.

    python ddp_features_script.py OUT_DIR

Each scenario writes `<scenario>_rank<r>.json` to OUT_DIR:
- sync_bn: `Trainer(sync_batchnorm=True)` on a Linear-BatchNorm-Linear model: weights, running stats, layer classes.
- comm_hook: `DDPStrategy(ddp_comm_hook=allreduce_hook, ddp_comm_wrapper=counting)`: weights and hook calls.
- averaging: post-local SGD (`PostLocalSGDState` + `model_averaging_period=2`), subgroups of one rank, so
  ranks drift apart between averaging steps: per step, whether both ranks hold the same weights.
- rank_zero_only: `self.log(..., sync_dist=True, rank_zero_only=True)` called on rank 0 only.
- versions: a CSVLogger's version and `trainer.log_dir` as each rank sees them.
- last: `fit(ckpt_path="last")` where rank 1's ModelCheckpoint points at an older "last" file.
"""

import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, post_localSGD_hook
from torch.nn import functional as F

import fulmen as L
from ddp_modules import DDPProbe, ddp_trainer, make_batchnorm_net, make_loader
from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import CSVLogger
from fulmen.strategies import DDPStrategy

HOOK_CALLS = [0]


def counting(hook):
    def wrapped(state, bucket):
        HOOK_CALLS[0] += 1
        return hook(state, bucket)

    return wrapped


def strategy(**kwargs):
    # A short collective timeout turns a deadlock between the ranks into an error instead of a hang.
    return DDPStrategy(timeout=timedelta(seconds=20), **kwargs)


def trainer(out_dir, **flags):
    return ddp_trainer(out_dir, **{"strategy": strategy(), "max_epochs": 1, **flags})


def write(out_dir, scenario, rank, report):
    with open(os.path.join(out_dir, f"{scenario}_rank{rank}.json"), "w") as file:
        json.dump(report, file)


def tensors(state):
    return {key: value.tolist() for key, value in state.items()}


class BatchNormNet(L.LightningModule):
    """`make_batchnorm_net()`, MSE, SGD lr 0.1."""

    def __init__(self):
        super().__init__()
        self.net = make_batchnorm_net()
        self.classes = {}

    def on_train_start(self):
        self.classes["during_fit"] = type(self.net[1]).__name__

    def training_step(self, batch, batch_idx):
        _, x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def run_sync_bn(out_dir):
    model = BatchNormNet()
    run = trainer(out_dir, sync_batchnorm=True, max_epochs=2)
    run.fit(model, make_loader())
    model.classes["after_fit"] = type(model.net[1]).__name__
    write(out_dir, "sync_bn", run.global_rank, {"state": tensors(model.state_dict()), "classes": model.classes})


def run_comm_hook(out_dir):
    model = DDPProbe(log_sync=False)
    run = trainer(out_dir, strategy=strategy(ddp_comm_hook=default_hooks.allreduce_hook, ddp_comm_wrapper=counting),
                  max_epochs=2)
    run.fit(model, make_loader())
    write(out_dir, "comm_hook", run.global_rank, {"state": tensors(model.state_dict()), "hook_calls": HOOK_CALLS[0]})


class DriftProbe(DDPProbe):
    """Records after every optimizer step whether both ranks hold the same weights."""

    def __init__(self, state):
        super().__init__(log_sync=False)
        self.comm_state = state
        self.same_weights = []

    def setup(self, stage):
        # One rank per subgroup: after the warm-up, gradients are not all-reduced at all (local SGD).
        self.comm_state.subgroup, _ = dist.new_subgroups(group_size=1)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        gathered = self.all_gather(self.layer.weight.detach())
        self.same_weights.append(bool(torch.equal(gathered[0], gathered[1])))


def run_averaging(out_dir):
    state = post_localSGD_hook.PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=2)
    model = DriftProbe(state)
    run = trainer(out_dir, strategy=strategy(ddp_comm_state=state, ddp_comm_hook=post_localSGD_hook.post_localSGD_hook,
                                             model_averaging_period=2), max_epochs=2)
    run.fit(model, make_loader())
    write(out_dir, "averaging", run.global_rank, {"same_weights": model.same_weights})


class RankZeroLogger(DDPProbe):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_rank == 0:
            self.log("rank0_loss", loss, on_step=False, on_epoch=True, sync_dist=True, rank_zero_only=True)
        return loss


def run_rank_zero_only(out_dir):
    model = RankZeroLogger(log_sync=False)
    run = trainer(out_dir)
    run.fit(model, make_loader())
    metrics = {key: value.item() for key, value in run.callback_metrics.items()}
    losses = model.record["train_losses"]["0"]
    write(out_dir, "rank_zero_only", run.global_rank, {"metrics": metrics, "local_mean": sum(losses) / len(losses)})


def run_versions(out_dir):
    root = os.path.join(out_dir, "logs")
    logger = CSVLogger(root)
    run = trainer(out_dir, logger=logger)
    run.fit(DDPProbe(log_sync=False), make_loader())
    write(out_dir, "versions", run.global_rank, {"version": logger.version, "log_dir": run.log_dir,
                                                 "logger_log_dir": logger.log_dir})


def run_last(out_dir):
    first = trainer(out_dir)
    first.fit(DDPProbe(log_sync=False), make_loader())
    older = os.path.join(out_dir, "older.ckpt")
    first.save_checkpoint(older)
    newer = os.path.join(out_dir, "newer.ckpt")
    second = trainer(out_dir, max_epochs=2)
    second.fit(DDPProbe(log_sync=False), make_loader())
    second.save_checkpoint(newer)
    rank = second.global_rank
    checkpoint = ModelCheckpoint(dirpath=os.path.join(out_dir, "last_ckpts"))
    # What each rank finds on its own disk may differ (node-local storage): rank 1 sees an older file.
    checkpoint.last_model_path = newer if rank == 0 else older
    resumed = trainer(out_dir, max_epochs=3, enable_checkpointing=True, callbacks=[checkpoint])
    resumed.fit(DDPProbe(log_sync=False), make_loader(), ckpt_path="last")
    write(out_dir, "last", rank, {"ckpt_path": resumed.ckpt_path, "newer": newer})


SCENARIOS = {"sync_bn": run_sync_bn, "comm_hook": run_comm_hook, "averaging": run_averaging,
             "rank_zero_only": run_rank_zero_only, "versions": run_versions, "last": run_last}


def main():
    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    for name in sys.argv[2:] or SCENARIOS:
        SCENARIOS[name](out_dir)


if __name__ == "__main__":
    main()
