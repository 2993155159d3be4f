"""ModelParallelStrategy: user-defined 2-D parallelism (tensor parallel x FSDP2 data parallel) over a DeviceMesh.

Owns: the process group plus a `("data_parallel", "tensor_parallel")` `DeviceMesh` handed to the LightningModule
(`self.device_mesh`), where `configure_model` applies `parallelize_module` and `fully_shard` itself; the
distributed sampler split by data-parallel rank only (tensor-parallel peers see the same batch); materialising
meta-device parameters after the user's parallelisation. Process launch, ranks and collectives are
`ProcessGroupStrategy`'s, the step and checkpoints (full file or `torch.distributed.checkpoint` directory)
`ShardedModuleMethods`' (as FSDPStrategy's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import torch

from fulmen.strategies import fsdp_wrap
from fulmen.strategies.process_group import ProcessGroupStrategy
from fulmen.strategies.sharded_module import ShardedModuleMethods
from fulmen.trainer.state import TrainerFn

MESH_DIM_NAMES = ("data_parallel", "tensor_parallel")
_SUPPORTED_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-true")


class ModelParallelStrategy(ShardedModuleMethods, ProcessGroupStrategy):
    """Tensor parallelism combined with FSDP2, applied by the user in `LightningModule.configure_model` over
    `self.device_mesh` (dimensions "data_parallel" and "tensor_parallel").

    `data_parallel_size` defaults ("auto") to the number of nodes, `tensor_parallel_size` to the processes per
    node; their product must be the world size. `save_distributed_checkpoint=True` saves a directory with each
    rank's shards (`torch.distributed.checkpoint`), False one full file written by rank 0.
    """

    def __init__(self, data_parallel_size: Any = "auto", tensor_parallel_size: Any = "auto",
                 save_distributed_checkpoint: bool = True, process_group_backend: str | None = None,
                 timeout: timedelta | None = timedelta(minutes=30)) -> None:
        for name, size in (("data_parallel_size", data_parallel_size), ("tensor_parallel_size", tensor_parallel_size)):
            if size != "auto" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ValueError(f"`ModelParallelStrategy({name}={size!r})` is invalid; pass an int >= 1 or 'auto'.")
        if not isinstance(save_distributed_checkpoint, bool):
            raise TypeError(f"`ModelParallelStrategy(save_distributed_checkpoint={save_distributed_checkpoint!r})` "
                            "must be True or False.")
        self._data_parallel_size = data_parallel_size
        self._tensor_parallel_size = tensor_parallel_size
        self._save_distributed_checkpoint = save_distributed_checkpoint
        self._state_dict_type = "sharded" if save_distributed_checkpoint else "full"  # ShardedModuleMethods' checkpoints
        self._device_mesh: Any = None
        # Lightning launches this strategy's processes as scripts only ("popen").
        super().__init__(process_group_backend=process_group_backend, timeout=timeout)

    def configure_from_trainer_flags(self, devices: list[torch.device], num_nodes: int, environment: Any,
                                     precision: Any) -> None:
        """Take the devices, nodes, cluster environment and precision from the Trainer's flags."""
        name = getattr(precision, "precision", "32-true")
        if name not in _SUPPORTED_PRECISIONS:
            raise ValueError(f"`ModelParallelStrategy` does not support `precision={name!r}`; choose one of "
                             f"{', '.join(_SUPPORTED_PRECISIONS)}.")
        super().configure_from_trainer_flags(devices, num_nodes, environment, precision)

    def set_layer_sync(self, layer_sync: Any) -> None:
        """Refused: one layer sync over every process would also average across tensor-parallel peers, which see
        the same batch (Lightning's ModelParallelStrategy ignores it without a word)."""
        raise ValueError(f"`ModelParallelStrategy` does not apply {type(layer_sync).__name__} "
                         "(`Trainer(sync_batchnorm=True)` or a LayerSync plugin): convert the layers yourself in "
                         "`configure_model`, e.g. `torch.nn.SyncBatchNorm.convert_sync_batchnorm(module, "
                         "process_group=self.device_mesh['data_parallel'].get_group())`.")

    @property
    def device_mesh(self) -> Any:
        """The 2-D `DeviceMesh` ("data_parallel", "tensor_parallel"), built when the processes join."""
        if self._device_mesh is None:
            raise RuntimeError("The device mesh exists once the processes have joined (from `configure_model` "
                               "on); it cannot be read before the Trainer starts running.")
        return self._device_mesh

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        """Split the data over the data-parallel ranks only: tensor-parallel peers get the same batches."""
        data_parallel = self.device_mesh["data_parallel"]
        return {"num_replicas": data_parallel.size(), "rank": data_parallel.get_local_rank()}

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True

    def _mesh_shape(self) -> tuple[int, int]:
        data = self.num_nodes if self._data_parallel_size == "auto" else self._data_parallel_size
        tensor = self.num_processes if self._tensor_parallel_size == "auto" else self._tensor_parallel_size
        if data * tensor != self.world_size:
            raise RuntimeError(f"`ModelParallelStrategy(data_parallel_size={data}, tensor_parallel_size={tensor})`: "
                               f"their product must equal the world size ({self.world_size} = num_nodes x devices); "
                               "change the sizes or the Trainer's `devices`/`num_nodes`.")
        return data, tensor

    def setup_environment(self) -> None:
        """Join the process group and build the device mesh (before the `setup` and `configure_model` hooks)."""
        shape = self._mesh_shape()  # a wrong shape fails before any process group exists
        super().setup_environment()
        if self._device_mesh is None or tuple(self._device_mesh.shape) != shape:
            from torch.distributed.device_mesh import init_device_mesh

            self._device_mesh = init_device_mesh(self.root_device.type, shape, mesh_dim_names=MESH_DIM_NAMES)

    def connect(self, model: Any) -> None:
        super().connect(model)
        model._device_mesh = self._device_mesh  # `self.device_mesh` inside configure_model

    def setup(self, trainer: Any) -> None:
        """Check the user parallelised the module, materialise meta parameters, then create the optimizers."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        from fulmen.core.hooks import ModelHooks, is_overridden

        if self._accelerator is not None:
            self._accelerator.setup(trainer)
        module = self.lightning_module
        if not is_overridden("configure_model", module, ModelHooks):
            raise TypeError("`ModelParallelStrategy` needs the LightningModule to override `configure_model()` and "
                            "parallelise itself there (`parallelize_module` on `self.device_mesh['tensor_parallel']`,"
                            " `fully_shard` on `self.device_mesh['data_parallel']`).")
        if any(isinstance(m, FullyShardedDataParallel) for m in module.modules()):
            raise TypeError("The module holds FSDP1 `FullyShardedDataParallel` wrappers; `ModelParallelStrategy` "
                            "works with FSDP2: use `torch.distributed.fsdp.fully_shard` in `configure_model`.")
        if fsdp_wrap.has_meta_tensors(module):
            fsdp_wrap.materialize(module, self.root_device)
        self.precision_plugin.convert_module(module)
        self.model_to_device()
        self.barrier()
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()

    def model_to_device(self) -> None:
        """Move what the user left unsharded (DTensor shards are moved with their local tensors)."""
        if self._module is not None:
            self._module.to(self.root_device)

    @contextlib.contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Generator[None, None, None]:
        """With `empty_init=True` new tensors go to the meta device, materialised after `configure_model`."""
        with torch.device("meta") if empty_init else contextlib.nullcontext(), \
                self.precision_plugin.tensor_init_context():
            yield
