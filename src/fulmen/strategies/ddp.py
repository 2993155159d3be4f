"""DDPStrategy: one process per device, gradients all-reduced by `torch.distributed` (gloo on CPU, NCCL on GPU).

Owns: the process group, wrapping the module in `DistributedDataParallel`, running `training_step`
through the DDP forward (so gradients are synchronized), `no_sync` while accumulating, and the
collectives (reduce, all_gather, broadcast, barrier).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fulmen.checkpoint_io import CheckpointIO
from fulmen.precision import Precision
from fulmen.plugins.layer_sync import LayerSync
from fulmen.strategies.cluster_environments import ClusterEnvironment, LightningEnvironment
from fulmen.strategies.ddp_comm import _check_ddp_kwargs, _CommHookConfig
from fulmen.strategies.launchers import MultiprocessingLauncher, SubprocessScriptLauncher
from fulmen.strategies.parallel import ParallelStrategy
from fulmen.strategies.strategy import Strategy, reject_accelerator_object
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.apply_func import apply_to_collection
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_only
from fulmen.utilities.seed import reset_seed

_REDUCE_OPS = {"sum": "SUM", "mean": "SUM", "avg": "SUM", "max": "MAX", "min": "MIN"}


class DDPStrategy(ParallelStrategy):
    """Distributed data parallel training over `torch.distributed`.

    `divergence_timeout` (fulmen): seconds a rank may wait in a collective before the ranks are compared by the
    divergence detector; ranks that called different collectives, or one that stopped arriving, end every process
    with a report (exit code 3). None: `$FULMEN_DIVERGENCE_TIMEOUT`, else 30; 0 turns the detector off.
    """

    strategy_name = "ddp"

    def __init__(self, accelerator: Any = None, parallel_devices: list[torch.device] | None = None,
                 cluster_environment: ClusterEnvironment | None = None, checkpoint_io: CheckpointIO | None = None,
                 precision_plugin: Precision | None = None, ddp_comm_state: object | None = None,
                 ddp_comm_hook: Callable | None = None, ddp_comm_wrapper: Callable | None = None,
                 model_averaging_period: int | None = None, process_group_backend: str | None = None,
                 timeout: timedelta | None = timedelta(minutes=30), start_method: str = "popen",
                 find_unused_parameters: bool = False, static_graph: bool = False, num_nodes: int = 1,
                 divergence_timeout: float | timedelta | None = None, **ddp_kwargs: Any) -> None:
        reject_accelerator_object(accelerator, type(self).__name__)
        if divergence_timeout is not None:  # checked now, so a bad value fails before any process starts
            from fulmen.debug.divergence import resolve_timeout

            resolve_timeout(divergence_timeout)
        # None: $FULMEN_DIVERGENCE_TIMEOUT, else 30 s; read when a run starts (`ParallelStrategy._watch_collectives`).
        self._divergence_timeout = divergence_timeout
        _check_ddp_kwargs(ddp_kwargs)
        self._comm = _CommHookConfig(ddp_comm_state, ddp_comm_hook, ddp_comm_wrapper, model_averaging_period)
        self._model_averager: Any = None
        self._devices_given = parallel_devices is not None
        self._environment_given = cluster_environment is not None
        self._precision_given = precision_plugin is not None
        parallel_devices = parallel_devices or [torch.device("cpu")]
        self._num_nodes = num_nodes
        super().__init__(None, parallel_devices,
                         cluster_environment or LightningEnvironment(num_nodes, len(parallel_devices)),
                         checkpoint_io, precision_plugin)
        self._layer_sync: LayerSync | None = None
        self._process_group_backend = process_group_backend
        self._timeout = timeout
        self._start_method = start_method
        self._ddp_kwargs = {"find_unused_parameters": find_unused_parameters, "static_graph": static_graph,
                            **ddp_kwargs}
        self._ddp_model: DistributedDataParallel | None = None
        self._choose_launcher()
        self._share_ranks_with_environment()

    def configure_from_trainer_flags(self, devices: list[torch.device], num_nodes: int,
                                     environment: ClusterEnvironment, precision: Precision) -> None:
        """Fill in what the user left out of `DDPStrategy(...)` from the Trainer's accelerator/devices flags."""
        if not self._devices_given:
            self.parallel_devices = devices
            self._num_nodes = num_nodes
        if not self._environment_given:
            self.cluster_environment = environment
        if not self._precision_given:
            self.precision_plugin = precision
        self._choose_launcher()
        self._share_ranks_with_environment()

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Register the `strategy=` names this class implements ("ddp", "ddp_spawn", ...) with their options in
        `strategy_registry` (an object with Lightning's `register(name, cls, description=..., **init_params)`)."""
        from fulmen.strategies.select import _DDP_NAMES

        for name, options in _DDP_NAMES.items():
            strategy_registry.register(name, cls, description=f"DDP strategy ({name})", **options)

    @property
    def is_distributed(self) -> bool:
        """Always True (Lightning keeps this legacy property for backward compatibility)."""
        return True

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

    @property
    def model(self) -> torch.nn.Module | None:
        return self._ddp_model if self._ddp_model is not None else self._module

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

    def setup_module(self, module: Any) -> None:
        super().setup_module(module)
        if self._layer_sync is not None and _fitting(module):
            self._layer_sync.apply(module)  # after the move, so each layer is converted for its device
        self.configure_ddp()

    def configure_ddp(self) -> None:
        """Wrap the module in `DistributedDataParallel` and register the communication hook, if any."""
        self._ddp_model = DistributedDataParallel(self._module, device_ids=self.determine_ddp_device_ids(),
                                                  **self._ddp_kwargs)
        self._model_averager = self._comm.register(self._ddp_model)

    def determine_ddp_device_ids(self) -> list[int] | None:
        """The `device_ids` DDP is given: the root device's index on CUDA, None on CPU."""
        if self.root_device.type == "cpu":
            return None
        return [self.root_device.index]

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any], model: Any = None,
                       **kwargs: Any) -> Any:
        output = super().optimizer_step(optimizer, closure, model, **kwargs)
        if self._model_averager is not None:  # post-local SGD: average the parameters every `period` steps
            self._model_averager.average_parameters(
                iter([p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]))
        return output

    def model_to_device(self) -> None:
        if self._module is not None:
            self._module.to(self.root_device)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """`training_step` through the DDP forward (DDP synchronizes gradients only for what runs through its
        forward), under the precision's `train_step_context`."""
        ddp_model = self._ddp_model
        if ddp_model is None:
            return super().training_step(*args, **kwargs)
        module = self._module
        original_forward = module.forward

        def redirected(*inputs: Any, **options: Any) -> Any:
            module.forward = original_forward  # so `self(x)` inside training_step is the real forward
            return module.training_step(*inputs, **options)

        with self.precision_plugin.train_step_context():
            module.forward = redirected
            try:
                return ddp_model(*args, **kwargs)
            finally:
                module.forward = original_forward

    # -- collectives -------------------------------------------------------------------------------

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """All-reduce `tensor` over `group` (all processes) with `reduce_op`: 'mean', 'sum', 'max' or 'min'
        (or the `torch.distributed.ReduceOp` of one)."""
        value = tensor
        if not isinstance(value, torch.Tensor) or not dist.is_initialized():
            return value
        op_name = _reduce_op_name(reduce_op)
        if op_name not in _REDUCE_OPS:
            raise ValueError(f"reduce_op={reduce_op!r} is not supported; use 'mean', 'sum', 'max' or 'min'.")
        result = value.detach().clone() if value.requires_grad else value.clone()
        if not result.is_floating_point() and op_name in ("mean", "avg"):
            result = result.float()
        dist.all_reduce(result, op=getattr(dist.ReduceOp, _REDUCE_OPS[op_name]), group=group)
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

    def teardown(self) -> None:
        self._ddp_model = None
        self._model_averager = None
        module = self._module
        if self._layer_sync is not None and module is not None and _fitting(module):
            self._layer_sync.revert(module)
        super().teardown()


def _reduce_op_name(reduce_op: Any) -> str:
    if reduce_op is None:
        return "mean"
    if isinstance(reduce_op, str):
        return reduce_op.lower()
    for name, op in (("sum", dist.ReduceOp.SUM), ("max", dist.ReduceOp.MAX), ("min", dist.ReduceOp.MIN),
                     ("mean", dist.ReduceOp.AVG)):
        if reduce_op == op:
            return name
    return str(reduce_op)


def _fitting(module: Any) -> bool:
    # Lightning synchronises layers for `fit` only: evaluation uses the running statistics.
    trainer = getattr(module, "_trainer", None)
    return trainer is not None and trainer.state.fn == TrainerFn.FITTING


def gather_collection(strategy: Strategy, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
    """`all_gather` every tensor (scalars become shape `(world_size,)`) of a nested collection."""
    return apply_to_collection(data, torch.Tensor, lambda t: strategy.all_gather(t, group, sync_grads))
