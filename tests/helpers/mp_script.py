"""A standalone ModelParallelStrategy job for tests/strategies/test_model_parallel.py: the strategy's launcher
re-runs this file per rank (4 processes: a 2 x 2 mesh), and one job runs every scenario in sequence.

    python mp_script.py OUT_DIR all [--data 2 --tensor 2]   # training, sharded and full checkpoint round-trips
    python mp_script.py OUT_DIR single [--resume CKPT]   # one process: "auto" sizes (1 x 1 mesh), the
                                        # configure_model error, resuming a sharded checkpoint of the 2 x 2 job

Rank 0 writes `<scenario>.pt` (the full state dict after the fit and what the probes saw) to OUT_DIR.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fulmen as L  # noqa: E402
from fsdp_modules import FSDPNet, make_loader  # noqa: E402
from fulmen.strategies import ModelParallelStrategy  # noqa: E402
from fulmen.strategies.fsdp_checkpoint import model_state  # noqa: E402


class MPNet(FSDPNet):
    """FSDPNet's residual blocks split column-/row-wise over "tensor_parallel", everything sharded over
    "data_parallel" (Lightning's documented recipe)."""

    def configure_model(self):
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        mesh = self.device_mesh
        self.mesh_seen = (tuple(mesh.shape), mesh.mesh_dim_names)
        for block in self.net[:2]:
            parallelize_module(block, mesh["tensor_parallel"], {"inner": ColwiseParallel(), "outer": RowwiseParallel()})
            fully_shard(block, mesh=mesh["data_parallel"])
        fully_shard(self.net, mesh=mesh["data_parallel"])

    def on_train_start(self):
        super().on_train_start()
        self.sampler_kwargs = self.trainer.strategy.distributed_sampler_kwargs
        # after validation FSDP2 leaves the root's parameters gathered (plain tensors) until the next backward
        self.placements = {name: [str(p) for p in getattr(param, "placements", ())]
                           for name, param in self.named_parameters()}


def trainer(out_dir, strategy, devices, **flags):
    options = dict(accelerator="cpu", devices=devices, strategy=strategy, max_epochs=2, default_root_dir=out_dir,
                   logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    options.update(flags)
    return L.Trainer(**options)


def report(out_dir, name, run, model, **extra):
    state = {key: value.clone() for key, value in model_state(run.lightning_module, full=True).items()}
    seen = run.strategy.all_gather(torch.tensor(model.seen)) if model.seen else None
    kwargs = [run.strategy.broadcast(model.sampler_kwargs, src) for src in range(run.world_size)]
    if run.global_rank == 0:
        torch.save({"state": state, "seen": seen, "mesh": model.mesh_seen, "sampler_kwargs": kwargs,
                    "placements": model.placements, **extra}, os.path.join(out_dir, f"{name}.pt"))


def all_scenarios(out_dir, data, tensor):
    devices = data * tensor

    def strategy(**options):
        return ModelParallelStrategy(data_parallel_size=data, tensor_parallel_size=tensor, **options)

    model = MPNet()
    run = trainer(out_dir, strategy(), devices)
    run.fit(model, make_loader(data))
    report(out_dir, "train", run, model)
    model = MPNet()
    run = trainer(out_dir, strategy(), devices, accumulate_grad_batches=2)
    run.fit(model, make_loader(data), make_loader(data))
    report(out_dir, "accumulate", run, model, metrics={k: float(v) for k, v in run.callback_metrics.items()})
    model = MPNet()  # the gradients live on two meshes (2-D blocks, 1-D head): one total norm over both
    run = trainer(out_dir, strategy(), devices, gradient_clip_val=0.05)
    run.fit(model, make_loader(data))
    report(out_dir, "clip", run, model)
    for distributed in (True, False):
        kind = "sharded" if distributed else "full"
        model = MPNet()
        run = trainer(out_dir, strategy(save_distributed_checkpoint=distributed), devices, max_epochs=1)
        run.fit(model, make_loader(data))
        path = os.path.join(out_dir, f"{kind}.ckpt")
        run.save_checkpoint(path)
        if run.global_rank == 0:
            torch.save({"is_dir": os.path.isdir(path)}, os.path.join(out_dir, f"saved_{kind}.pt"))
        model = MPNet()
        run = trainer(out_dir, strategy(save_distributed_checkpoint=distributed), devices)
        run.fit(model, make_loader(data), ckpt_path=path)
        report(out_dir, f"resumed_{kind}", run, model)
    run = trainer(out_dir, strategy(), devices, max_epochs=1)
    with run.init_module(empty_init=True):  # built on the meta device, materialised after configure_model
        model = MPNet()
    built_on = str(next(model.parameters()).device)
    run.fit(model, make_loader(data))
    finite = all(bool(torch.isfinite(p.to_local()).all()) for p in model.parameters())
    report(out_dir, "meta", run, model, built_on=built_on, finite=run.strategy.reduce_boolean_decision(finite))


class Plain(FSDPNet):
    pass


def single(out_dir, resume):
    found = {}
    try:
        trainer(out_dir, ModelParallelStrategy(), 1).fit(Plain(), make_loader(1))
    except TypeError as error:
        found["no_configure_model"] = str(error)
    torch.save(found, os.path.join(out_dir, "errors.pt"))
    model = MPNet()
    run = trainer(out_dir, ModelParallelStrategy(), 1)
    run.fit(model, make_loader(1))
    report(out_dir, "auto_single", run, model)
    if resume:  # the 2 x 2 job's sharded checkpoint, resharded onto this one process
        model = MPNet()
        run = trainer(out_dir, ModelParallelStrategy(), 1)
        run.fit(model, make_loader(1), ckpt_path=resume)
        report(out_dir, "resumed_sharded_on_1", run, model)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("scenario", choices=("all", "single"))
    parser.add_argument("--data", type=int, default=2)
    parser.add_argument("--tensor", type=int, default=2)
    parser.add_argument("--resume", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.scenario == "all":
        all_scenarios(args.out_dir, args.data, args.tensor)
    else:
        single(args.out_dir, args.resume)
