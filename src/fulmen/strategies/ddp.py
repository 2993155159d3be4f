"""DDPStrategy: one process per device, gradients all-reduced by `torch.distributed` (gloo on CPU, NCCL on GPU).

Owns: wrapping the module in `DistributedDataParallel`, running `training_step` through the DDP forward (so
gradients are synchronized), `no_sync` while accumulating, layer sync and DDP communication hooks. Process launch,
ranks, the process group and its collectives are `ProcessGroupStrategy`'s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from fulmen.checkpoint_io import CheckpointIO
from fulmen.precision import Precision
from fulmen.strategies.cluster_environments import ClusterEnvironment
from fulmen.strategies.ddp_comm import _check_ddp_kwargs, _CommHookConfig
from fulmen.strategies.process_group import ProcessGroupStrategy
from fulmen.strategies.strategy import Strategy, reject_accelerator_object
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.apply_func import apply_to_collection


class DDPStrategy(ProcessGroupStrategy):
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
        self._ddp_kwargs = {"find_unused_parameters": find_unused_parameters, "static_graph": static_graph,
                            **ddp_kwargs}
        self._ddp_model: DistributedDataParallel | None = None
        super().__init__(parallel_devices, cluster_environment, checkpoint_io, precision_plugin, num_nodes,
                         process_group_backend, timeout, start_method)

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

    @property
    def model(self) -> torch.nn.Module | None:
        return self._ddp_model if self._ddp_model is not None else self._module

    # -- setup -------------------------------------------------------------------------------------

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

    def teardown(self) -> None:
        self._ddp_model = None
        self._model_averager = None
        module = self._module
        if self._layer_sync is not None and module is not None and _fitting(module):
            self._layer_sync.revert(module)
        super().teardown()


def _fitting(module: Any) -> bool:
    # Lightning synchronises layers for `fit` only: evaluation uses the running statistics.
    trainer = getattr(module, "_trainer", None)
    return trainer is not None and trainer.state.fn == TrainerFn.FITTING


def gather_collection(strategy: Strategy, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
    """`all_gather` every tensor (scalars become shape `(world_size,)`) of a nested collection."""
    return apply_to_collection(data, torch.Tensor, lambda t: strategy.all_gather(t, group, sync_grads))
