"""Constructor probes for `FSDPStrategy` (tests/test_signatures_components.py). Probes that need sharding run
in a one-process gloo group joined through a file store (no port); their effect across 2 processes is checked
in tests/strategies/test_fsdp*.py."""

import contextlib
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from fulmen.checkpoint_io import CheckpointIO
from fulmen.plugins.environments import LightningEnvironment
from fulmen.plugins.precision import FSDPPrecision, Precision
from fulmen.strategies import FSDPStrategy
from helpers.signature_probes import raises, trainer_only


@contextlib.contextmanager
def one_rank_group(tmp):
    store = dist.FileStore(str(tmp / "fsdp_probe_store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(x)


def sharded(tmp, strategy):
    """A Block-Block-Linear model sharded by `strategy` (in a one-process group)."""
    model = nn.Sequential(Block(), Block(), nn.Linear(4, 2))
    with one_rank_group(tmp):
        strategy._shard(model)
        model(torch.randn(3, 4)).sum().backward()
    return model


def _units(model):
    from torch.distributed.fsdp import FSDPModule

    return sorted(name for name, module in model.named_modules() if isinstance(module, FSDPModule))


def _checkpointed(model):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    return sorted(name for name, module in model.named_modules() if isinstance(module, CheckpointWrapper))


def _offloaded(tmp):
    from torch.distributed.fsdp import CPUOffloadPolicy

    model = sharded(tmp, FSDPStrategy(cpu_offload=True))
    return isinstance(FSDPStrategy(cpu_offload=True).cpu_offload, CPUOffloadPolicy) and model[0].linear.weight.grad \
        is not None and FSDPStrategy(cpu_offload=False).cpu_offload is None


def _mixed(tmp):
    from torch.distributed.fsdp import MixedPrecision, MixedPrecisionPolicy

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16)
    return FSDPStrategy(mixed_precision=policy).mixed_precision_config is policy and raises(
        ValueError, "buffer_dtype", lambda: FSDPStrategy(mixed_precision=MixedPrecision(
            param_dtype=torch.bfloat16, buffer_dtype=torch.float32)))


def _precision(tmp):
    plugin = FSDPPrecision("bf16-mixed")
    strategy = trainer_only(strategy=FSDPStrategy(precision_plugin=plugin), devices=2).strategy
    return strategy.precision_plugin is plugin and strategy.mixed_precision_config.param_dtype == torch.bfloat16 \
        and raises(TypeError, "FSDPPrecision", lambda: FSDPStrategy(precision_plugin=_OwnPrecision()))


class _OwnPrecision(Precision):
    pass


def _deprecated_checkpointing(tmp):
    import pytest

    with pytest.deprecated_call(match="activation_checkpointing_policy"):
        strategy = FSDPStrategy(activation_checkpointing=[Block])
    return _checkpointed(sharded(tmp, strategy))


def _mesh_error(tmp):
    with one_rank_group(tmp):
        return raises(ValueError, "holds 2 processes but the job has 1",
                      lambda: FSDPStrategy(device_mesh=(2, 1), sharding_strategy="HYBRID_SHARD")._shard(nn.Linear(2, 2)))


FSDP_STRATEGY = {
    "accelerator": lambda tmp: raises(NotImplementedError, "no Accelerator", lambda: FSDPStrategy(accelerator="cpu")),
    "parallel_devices": lambda tmp: FSDPStrategy(parallel_devices=[torch.device("cpu")] * 3).world_size == 3,
    "cluster_environment": lambda tmp: (lambda env: trainer_only(strategy=FSDPStrategy(cluster_environment=env),
                                                                 devices=2).strategy.cluster_environment is env)(
        LightningEnvironment()),
    "checkpoint_io": lambda tmp: (lambda io: FSDPStrategy(checkpoint_io=io).checkpoint_io is io)(CheckpointIO()),
    "precision_plugin": _precision,
    "process_group_backend": lambda tmp: FSDPStrategy(process_group_backend="mpi").process_group_backend == "mpi",
    "timeout": lambda tmp: FSDPStrategy(timeout=timedelta(seconds=5))._timeout == timedelta(seconds=5),
    "cpu_offload": _offloaded,
    "mixed_precision": _mixed,
    "auto_wrap_policy": lambda tmp: _units(sharded(tmp, FSDPStrategy(auto_wrap_policy={Block}))) == ["", "0", "1"],
    "activation_checkpointing": lambda tmp: _deprecated_checkpointing(tmp) == ["0", "1"],
    "activation_checkpointing_policy": lambda tmp: _checkpointed(sharded(tmp, FSDPStrategy(
        activation_checkpointing_policy={nn.Linear}))) == ["0.linear", "1.linear", "2"],
    "sharding_strategy": lambda tmp: FSDPStrategy(sharding_strategy="shard_grad_op").sharding_strategy
    == "SHARD_GRAD_OP" and raises(ValueError, "sharding_strategy", lambda: FSDPStrategy(sharding_strategy="ALL")),
    "state_dict_type": lambda tmp: raises(ValueError, "state_dict_type", lambda: FSDPStrategy(state_dict_type="x")),
    "device_mesh": _mesh_error,
    "kwargs": lambda tmp: raises(TypeError, "limit_all_gathers", lambda: FSDPStrategy(limit_all_gathers=True))
    and raises(ValueError, "use_orig_params", lambda: FSDPStrategy(use_orig_params=False))
    and (lambda p: FSDPStrategy(ignored_params={p}).kwargs["ignored_params"] == {p})(nn.Parameter(torch.ones(1))),
}
