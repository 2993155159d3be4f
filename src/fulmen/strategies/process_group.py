"""ProcessGroupStrategy: what DDPStrategy, FSDPStrategy and ModelParallelStrategy share below their own work.

Owns: launching the processes (fulmen's launchers, or none when torchrun/SLURM start them), the ranks and world
size (from the Trainer's flags, or from the environment that started the processes), joining the
`torch.distributed` process group, and the collectives over it (reduce, barrier, broadcast). Internal: Lightning has
no such class (its three strategies derive from `ParallelStrategy` separately); `isinstance` checks against
Lightning's classes are unchanged.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fulmen.checkpoint_io import CheckpointIO
from fulmen.plugins.layer_sync import LayerSync
from fulmen.precision import Precision
from fulmen.strategies.cluster_environments import ClusterEnvironment, LightningEnvironment
from fulmen.strategies.launchers import MultiprocessingLauncher, SubprocessScriptLauncher
from fulmen.strategies.parallel import ParallelStrategy
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_only
from fulmen.utilities.seed import reset_seed

REDUCE_OPS = {"sum": "SUM", "mean": "SUM", "avg": "SUM", "max": "MAX", "min": "MIN"}


class ProcessGroupStrategy(ParallelStrategy):
    """One process per device joined in a `torch.distributed` process group (gloo on CPU, NCCL on GPU).

    What the user left out (`parallel_devices`, `cluster_environment`, `precision_plugin`) is filled in from the
    Trainer's flags by `configure_from_trainer_flags`.
    """

    def __init__(self, parallel_devices: list[torch.device] | None = None,
                 cluster_environment: ClusterEnvironment | None = None, checkpoint_io: CheckpointIO | None = None,
                 precision_plugin: Precision | None = None, num_nodes: int = 1,
                 process_group_backend: str | None = None, timeout: timedelta | None = timedelta(minutes=30),
                 start_method: str = "popen") -> None:
        self._devices_given = parallel_devices is not None
        self._environment_given = cluster_environment is not None
        self._precision_given = precision_plugin is not None
        parallel_devices = parallel_devices or [torch.device("cpu")]
        self._num_nodes = num_nodes
        super().__init__(None, parallel_devices,
                         cluster_environment or LightningEnvironment(num_nodes, len(parallel_devices)),
                         checkpoint_io, None)
        if precision_plugin is not None:
            self.precision_plugin = precision_plugin  # through the subclass's setter (FSDP converts it)
        self._process_group_backend = process_group_backend
        self._timeout = timeout
        self._start_method = start_method
        self._choose_launcher()
        self._share_ranks_with_environment()

    def configure_from_trainer_flags(self, devices: list[torch.device], num_nodes: int,
                                     environment: ClusterEnvironment, precision: Precision) -> None:
        """Fill in what the user left out of the strategy's arguments from the Trainer's accelerator/devices flags."""
        if not self._devices_given:
            self.parallel_devices = devices
            self._num_nodes = num_nodes
        if not self._environment_given:
            self.cluster_environment = environment
        if not self._precision_given:
            self.precision_plugin = precision
        self._choose_launcher()
        self._share_ranks_with_environment()

    def _share_ranks_with_environment(self) -> None:
        # With fulmen's own launcher the flags decide the ranks; the environment then reports the same ones.
        if not self._ranks_from_launcher:
            self.cluster_environment.set_world_size(self.world_size)
            self.cluster_environment.set_global_rank(self.global_rank)

    def set_world_ranks(self) -> None:
        """Tell the cluster environment this process's global rank and the world size; rank-zero-only helpers
        learn the rank too."""
        self._share_ranks_with_environment()
        rank_zero_only.rank = self.global_rank

    def _choose_launcher(self) -> None:
        start_method = self._start_method
        if self.cluster_environment.creates_processes_externally:
            self.launcher = None
        elif start_method == "popen":
            self.launcher = SubprocessScriptLauncher(self)
        else:
            self.launcher = MultiprocessingLauncher(self, start_method)

    # -- identity ----------------------------------------------------------------------------------

    @property
    def num_processes(self) -> int:
        return len(self.parallel_devices)

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @num_nodes.setter
    def num_nodes(self, num_nodes: int) -> None:
        self._num_nodes = num_nodes
        self._share_ranks_with_environment()

    @property
    def _ranks_from_launcher(self) -> bool:
        # torchrun and SLURM state the ranks and world size; with fulmen's own launcher the flags decide them.
        environment = self.cluster_environment
        return environment.creates_processes_externally and not isinstance(environment, LightningEnvironment)

    @property
    def world_size(self) -> int:
        if self._ranks_from_launcher:
            return self.cluster_environment.world_size()
        return self.num_nodes * self.num_processes

    @property
    def local_rank(self) -> int:
        return self.cluster_environment.local_rank()

    @property
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank()

    @property
    def global_rank(self) -> int:
        if self._ranks_from_launcher:
            return self.cluster_environment.global_rank()
        return self.node_rank * self.num_processes + self.local_rank

    @property
    def process_group_backend(self) -> str:
        return self._process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")

    # -- setup -------------------------------------------------------------------------------------

    def setup_environment(self) -> None:
        """Join the process group (once per process) and make rank-zero-only helpers know our rank."""
        self.cluster_environment.validate_settings(self.num_processes, self.num_nodes)
        self.set_world_ranks()  # a started process knows its LOCAL_RANK only now
        if self.root_device.type == "cuda":
            torch.cuda.set_device(self.root_device)
        self.setup_distributed()

    def setup_distributed(self) -> None:
        """Re-apply `seed_everything`'s seed, then join the process group (once per process) over
        `process_group_backend`."""
        reset_seed()  # as Lightning: every rank (a spawned one starts unseeded) draws from the seed the user set
        if dist.is_initialized():
            return
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        dist.init_process_group(self.process_group_backend, rank=self.global_rank, world_size=self.world_size,
                                timeout=self._timeout)
        rank_zero_info(f"Initialized distributed: {self.world_size} processes, backend={self.process_group_backend}")

    def set_layer_sync(self, layer_sync: LayerSync) -> None:
        self._layer_sync = layer_sync

    # -- collectives -------------------------------------------------------------------------------

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """All-reduce `tensor` over `group` (all processes) with `reduce_op`: 'mean', 'sum', 'max' or 'min'
        (or the `torch.distributed.ReduceOp` of one)."""
        value = tensor
        if not isinstance(value, torch.Tensor) or not dist.is_initialized():
            return value
        op_name = reduce_op_name(reduce_op)
        if op_name not in REDUCE_OPS:
            raise ValueError(f"reduce_op={reduce_op!r} is not supported; use 'mean', 'sum', 'max' or 'min'.")
        result = value.detach().clone() if value.requires_grad else value.clone()
        if not result.is_floating_point() and op_name in ("mean", "avg"):
            result = result.float()
        dist.all_reduce(result, op=getattr(dist.ReduceOp, REDUCE_OPS[op_name]), group=group)
        if op_name in ("mean", "avg"):
            result = result / dist.get_world_size(group)
        return result

    def barrier(self, name: str | None = None) -> None:
        """Wait until every process reaches this point."""
        if dist.is_initialized():
            dist.barrier()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not dist.is_initialized():
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]


def reduce_op_name(reduce_op: Any) -> str:
    """The lower-case name ('mean', 'sum', 'max', 'min', ...) of a `reduce_op` string or `ReduceOp`."""
    if reduce_op is None:
        return "mean"
    if isinstance(reduce_op, str):
        return reduce_op.lower()
    for name, op in (("sum", dist.ReduceOp.SUM), ("max", dist.ReduceOp.MAX), ("min", dist.ReduceOp.MIN),
                     ("mean", dist.ReduceOp.AVG)):
        if reduce_op == op:
            return name
    return str(reduce_op)
