"""ParallelStrategy: the base of strategies that run one process per device (Lightning's `ParallelStrategy`).

Owns: the list of devices, the cluster environment that states the ranks, and the collectives every
multi-process strategy shares (all_gather, boolean decisions, skipping gradient sync).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import torch
import torch.distributed as dist

from fulmen.checkpoint_io import CheckpointIO
from fulmen.precision import Precision
from fulmen.strategies.cluster_environments import ClusterEnvironment
from fulmen.strategies.strategy import Strategy


class ParallelStrategy(Strategy):
    """Training with several processes, one per device in `parallel_devices`; `cluster_environment` states
    each process's ranks."""

    def __init__(self, accelerator: Any = None, parallel_devices: list[torch.device] | None = None,
                 cluster_environment: ClusterEnvironment | None = None, checkpoint_io: CheckpointIO | None = None,
                 precision_plugin: Precision | None = None) -> None:
        super().__init__(accelerator, checkpoint_io, precision_plugin)
        self.parallel_devices = parallel_devices
        self.cluster_environment: ClusterEnvironment | None = cluster_environment
        self._layer_sync: Any = None

    @property
    def parallel_devices(self) -> list[torch.device] | None:
        return self._parallel_devices

    @parallel_devices.setter
    def parallel_devices(self, parallel_devices: list[torch.device] | None) -> None:
        self._parallel_devices = parallel_devices

    @property
    def root_device(self) -> torch.device:
        devices = self.parallel_devices or [torch.device("cpu")]
        return devices[self.local_rank % len(devices)]

    @property
    def global_rank(self) -> int:
        return self.cluster_environment.global_rank() if self.cluster_environment is not None else 0

    @property
    def local_rank(self) -> int:
        return self.cluster_environment.local_rank() if self.cluster_environment is not None else 0

    @property
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank() if self.cluster_environment is not None else 0

    @property
    def world_size(self) -> int:
        return self.cluster_environment.world_size() if self.cluster_environment is not None else 1

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    def reconciliate_processes(self, trace: str) -> None:
        """Called with the traceback of a failed process to settle the others (nothing to do here: fulmen's
        launcher ends the other processes when one fails)."""

    @contextlib.contextmanager
    def block_backward_sync(self) -> Generator[None, None, None]:
        """Skip the gradient all-reduce of backward passes inside the block (gradient accumulation)."""
        model = self.model
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            with model.no_sync():
                yield
        else:
            yield

    def accumulation_context(self, accumulating: bool) -> contextlib.AbstractContextManager:
        return self.block_backward_sync() if accumulating else contextlib.nullcontext()

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        """Gather `tensor` from every process into a new leading dimension of size `world_size`."""
        if not (dist.is_available() and dist.is_initialized()):
            return tensor
        tensor = tensor.contiguous()
        if sync_grads:
            from torch.distributed.nn.functional import all_gather as differentiable_all_gather

            return torch.stack(differentiable_all_gather(tensor, group=group or dist.group.WORLD))
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, tensor, group=group)
        return torch.stack(gathered)

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """`all` (or, with `all=False`, `any`) of every process's `decision`."""
        if not (dist.is_available() and dist.is_initialized()):
            return decision
        votes = torch.tensor(int(decision), device=self.root_device)
        dist.all_reduce(votes, op=dist.ReduceOp.SUM)
        return bool(votes.item() == self.world_size) if all else bool(votes.item() > 0)

    def _watch_collectives(self, state: Any) -> None:
        """With several processes, start this run's divergence detector (`fulmen.debug.divergence`): collectives
        get numbers and call sites, and ranks that stop making the same ones end with a report, not a hang."""
        if self._divergence is not None:  # a run that ended without teardown
            self._divergence.stop()
            self._divergence = None
        if self.world_size < 2:
            return
        from fulmen.debug import divergence

        timeout = divergence.resolve_timeout(getattr(self, "_divergence_timeout", None))
        if timeout is not None:
            self._divergence = divergence.start(self, state, timeout)

    def teardown(self) -> None:
        if self._divergence is not None:
            self._divergence.stop()
            self._divergence = None
        if self.cluster_environment is not None:
            self.cluster_environment.teardown()
        super().teardown()
