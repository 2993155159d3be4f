"""FSDPStrategy: fully sharded data parallel training on FSDP2 (`torch.distributed.fsdp.fully_shard`).

Owns: Lightning's FSDPStrategy arguments applied through `fully_shard` (see `fsdp_wrap.py`), sharding the module
(and materialising a meta-device one) before the optimizers are created, skipping the gradient reduction while
accumulating, and checkpoints as full files or `torch.distributed.checkpoint` directories (`fsdp_checkpoint.py`).
Process launch, ranks and collectives are `ProcessGroupStrategy`'s (shared with DDPStrategy; Lightning's
FSDPStrategy is no DDPStrategy subclass, and fulmen's is not either).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import timedelta
from functools import partial
from typing import Any, Callable

import torch

from fulmen.checkpoint_io import CheckpointIO
from fulmen.precision import Precision
from fulmen.strategies import fsdp_wrap
from fulmen.strategies.cluster_environments import ClusterEnvironment
from fulmen.strategies.ddp import _fitting
from fulmen.strategies.fsdp_precision import FSDPPrecision, fsdp_precision_from
from fulmen.strategies.meta_build import MetaBuild
from fulmen.strategies.process_group import ProcessGroupStrategy
from fulmen.strategies.sharded_module import ShardedModuleMethods, is_sharded
from fulmen.strategies.select import _FSDP_NAMES as FSDP_NAMES
from fulmen.strategies.strategy import reject_accelerator_object
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.rank_zero import rank_zero_deprecation, rank_zero_info



class FSDPStrategy(ShardedModuleMethods, ProcessGroupStrategy):
    """Shard parameters, gradients and optimizer state across processes with FSDP2 (`fully_shard`).

    `auto_wrap_policy` (a set of layer classes or a callable policy) picks submodules that are sharded as their
    own unit; `sharding_strategy` "FULL_SHARD" reshards after forward, "SHARD_GRAD_OP" keeps the gathered
    parameters until backward, "NO_SHARD" replicates, "HYBRID_SHARD" shards within a node and replicates across
    nodes (a 2-D `device_mesh`); `state_dict_type="sharded"` saves checkpoints as `torch.distributed.checkpoint`
    directories, "full" as one file written by rank 0.
    """

    strategy_name = "fsdp"

    def __init__(self, accelerator: Any = None, parallel_devices: list[torch.device] | None = None,
                 cluster_environment: ClusterEnvironment | None = None, checkpoint_io: CheckpointIO | None = None,
                 precision_plugin: Precision | None = None, process_group_backend: str | None = None,
                 timeout: timedelta | None = timedelta(minutes=30), cpu_offload: Any = None,
                 mixed_precision: Any = None, auto_wrap_policy: Any = None, activation_checkpointing: Any = None,
                 activation_checkpointing_policy: Any = None, sharding_strategy: Any = "FULL_SHARD",
                 state_dict_type: str = "full", device_mesh: Any = None, **kwargs: Any) -> None:
        reject_accelerator_object(accelerator, type(self).__name__)
        self.sharding_strategy = fsdp_wrap.sharding_strategy_name(sharding_strategy)
        if activation_checkpointing is not None and activation_checkpointing_policy is not None:
            raise ValueError("Pass only `activation_checkpointing_policy` (the newer name); "
                             "`activation_checkpointing` says the same thing.")
        if activation_checkpointing is not None:  # Lightning deprecates the older name
            rank_zero_deprecation("`FSDPStrategy(activation_checkpointing=...)` is deprecated; pass the layer classes "
                                  "as `activation_checkpointing_policy={...}` instead.")
        self.cpu_offload = fsdp_wrap.offload_policy(cpu_offload)
        self.mixed_precision = fsdp_wrap.mixed_precision_policy(mixed_precision)
        self._wrap_predicate = fsdp_wrap.module_predicate(auto_wrap_policy, "auto_wrap_policy")
        self._checkpointing_predicate = fsdp_wrap.module_predicate(
            activation_checkpointing_policy if activation_checkpointing is None else activation_checkpointing,
            "activation_checkpointing_policy")
        if state_dict_type not in ("full", "sharded"):
            raise ValueError(f"`FSDPStrategy(state_dict_type={state_dict_type!r})` is invalid; use 'full' or "
                             "'sharded'.")
        self._state_dict_type = state_dict_type
        if device_mesh is not None and self.sharding_strategy == "NO_SHARD":
            raise ValueError("`sharding_strategy='NO_SHARD'` replicates over all processes; it takes no "
                             "`device_mesh`.")
        self._device_mesh = device_mesh
        self.kwargs = fsdp_wrap.fully_shard_kwargs(kwargs)
        super().__init__(parallel_devices, cluster_environment, checkpoint_io, precision_plugin,
                         process_group_backend=process_group_backend, timeout=timeout)

    @classmethod
    def get_registered_strategies(cls) -> list[str]:
        """The `strategy=` names this class implements."""
        return list(FSDP_NAMES)

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Register "fsdp" and "fsdp_cpu_offload" with their options in `strategy_registry`."""
        for name, options in FSDP_NAMES.items():
            strategy_registry.register(name, cls, description=f"Fully Sharded Data Parallel ({name})", **options)

    @property
    def precision_plugin(self) -> FSDPPrecision:
        if self._precision_plugin is None:
            self._precision_plugin = FSDPPrecision("32-true")
        return self._precision_plugin

    @precision_plugin.setter
    def precision_plugin(self, precision_plugin: Precision | None) -> None:
        self._precision_plugin = None if precision_plugin is None else fsdp_precision_from(precision_plugin)

    @property
    def mixed_precision_config(self) -> Any:
        """The `MixedPrecisionPolicy` in use: `mixed_precision` if given, else the precision plugin's."""
        return self.mixed_precision or self.precision_plugin.mixed_precision_config

    @property
    def model(self) -> torch.nn.Module | None:
        return self._module  # fully_shard works in place: the module is the sharded model

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True

    @property
    def device_mesh(self) -> Any:
        """The DeviceMesh the module is sharded over (built in `setup`)."""
        return self._device_mesh

    # -- setup -------------------------------------------------------------------------------------

    def setup(self, trainer: Any) -> None:
        """Shard the module (first run only), then create the optimizers over the sharded parameters."""
        if self._accelerator is not None:
            self._accelerator.setup(trainer)
        module = self.lightning_module
        fitting = trainer.state.fn == TrainerFn.FITTING
        if self._layer_sync is not None and fitting:
            self._layer_sync.apply(module)
        if not is_sharded(module):
            self.precision_plugin.convert_module(module)
            self._shard(module)
        self.barrier()
        if fitting:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()

    def _shard(self, module: torch.nn.Module) -> None:
        meta = fsdp_wrap.has_meta_tensors(module)
        if not meta:
            module.to(self.root_device)
        if not isinstance(self._device_mesh, tuple) and self._device_mesh is not None:
            mesh = self._device_mesh
        else:
            mesh = fsdp_wrap.build_mesh(self.sharding_strategy, self._device_mesh, self.world_size, self.num_nodes,
                                        self.root_device.type)
        self._device_mesh = mesh
        fsdp_wrap.apply_activation_checkpointing(module, self._checkpointing_predicate)
        options = dict(self.kwargs, mesh=mesh, mp_policy=self.mixed_precision_config,
                       reshard_after_forward=self.sharding_strategy in ("FULL_SHARD", "HYBRID_SHARD"))
        if options["mp_policy"] is None:
            del options["mp_policy"]
        if self.cpu_offload is not None:
            options["offload_policy"] = self.cpu_offload
        fsdp_wrap.shard_module(module, self._wrap_predicate, **options)
        if meta:  # allocate only this rank's shards, then initialise them
            fsdp_wrap.materialize(module, torch.device("cpu") if self.cpu_offload is not None else self.root_device)

    def build_layers(self, build: Callable[[], None]) -> None:
        """Run `configure_model` with its layers on the meta device (no memory: `setup` allocates only this rank's
        shards and initialises them with `reset_parameters`) when that reproduces the build; otherwise, on every
        rank alike, in full on the root device, as Lightning (see `meta_build.py` for when)."""
        module = self.lightning_module
        if module is None or is_sharded(module) or not _builds_layers(module) or not MetaBuild.eligible(module):
            super().build_layers(build)
            return
        attempt = MetaBuild(module)
        reason = attempt.attempt(build, partial(self._layer_contexts, empty_init=True))
        # One verdict for all ranks: a rank falling back makes every rank build in full.
        verdict = torch.tensor(0.0 if reason is None else 1.0)
        if float(self.reduce(verdict, reduce_op="max")) == 0.0:
            return
        attempt.rewind()
        if reason is not None:
            rank_zero_info(f"FSDP: the layers made in `configure_model` are built in full, then sharded, because "
                           f"{reason}. To build them sharded from the meta device, create only torch layers there "
                           "and initialise them in their `reset_parameters()`.")
        super().build_layers(build)

    @contextlib.contextmanager
    def _layer_contexts(self, empty_init: bool) -> Generator[None, None, None]:
        with self.tensor_init_context(empty_init=empty_init), self.model_sharded_context(), \
                self.precision_plugin.module_init_context():
            yield

    def model_to_device(self) -> None:
        """Nothing to move: `fully_shard` places the shards."""

    @contextlib.contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Generator[None, None, None]:
        """New tensors in the precision's dtype; with `empty_init=True` on the meta device (no memory), to be
        materialised shard by shard in `setup`."""
        device = torch.device("meta") if empty_init else self.root_device
        with device, self.precision_plugin.tensor_init_context():
            yield

    @contextlib.contextmanager
    def block_backward_sync(self) -> Generator[None, None, None]:
        """Keep unreduced gradients during the block (gradient accumulation); reduce on the next backward."""
        module = self._module
        if not is_sharded(module):
            yield
            return
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)

    def teardown(self) -> None:
        module = self._module
        if self._layer_sync is not None and module is not None and _fitting(module):
            self._layer_sync.revert(module)
        super().teardown()


def _builds_layers(module: Any) -> bool:
    from fulmen.core.hooks import is_overridden
    from fulmen.core.module import LightningModule

    return any(is_overridden(name, module, LightningModule) for name in ("configure_model", "configure_sharded_model"))
