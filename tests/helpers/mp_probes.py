"""Constructor probes for `ModelParallelStrategy` (tests/test_signatures_components.py). Probes that need the
device mesh run in a one-process gloo group joined through a file store (no port); the 4-process 2 x 2 job is in
tests/strategies/test_model_parallel.py."""

from datetime import timedelta

from torch import nn

from fulmen.strategies import ModelParallelStrategy
from helpers.fsdp_probes import one_rank_group
from helpers.signature_probes import raises


def _mesh(tmp, **sizes):
    with one_rank_group(tmp):
        strategy = ModelParallelStrategy(**sizes)
        strategy.setup_environment()
        return tuple(strategy.device_mesh.shape), strategy.device_mesh.mesh_dim_names


def _state_is_sharded(tmp, distributed):
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    with one_rank_group(tmp):
        strategy = ModelParallelStrategy(save_distributed_checkpoint=distributed)
        strategy.setup_environment()
        model = nn.Linear(2, 2)
        fully_shard(model, mesh=strategy.device_mesh["data_parallel"])
        strategy.connect(model)
        return {isinstance(value, DTensor) for value in strategy.lightning_module_state_dict().values()}


MODEL_PARALLEL_STRATEGY = {
    "data_parallel_size": lambda tmp: _mesh(tmp, data_parallel_size=1) == ((1, 1), ("data_parallel", "tensor_parallel"))
    and raises(RuntimeError, "data_parallel_size=2", lambda: _mesh(tmp, data_parallel_size=2))
    and raises(ValueError, "data_parallel_size", lambda: ModelParallelStrategy(data_parallel_size=0)),
    "tensor_parallel_size": lambda tmp: _mesh(tmp, tensor_parallel_size=1)[0] == (1, 1)
    and raises(RuntimeError, "tensor_parallel_size=3", lambda: _mesh(tmp, tensor_parallel_size=3))
    and raises(ValueError, "tensor_parallel_size", lambda: ModelParallelStrategy(tensor_parallel_size="x")),
    "save_distributed_checkpoint": lambda tmp: _state_is_sharded(tmp, True) == {True}
    and _state_is_sharded(tmp, False) == {False}
    and raises(TypeError, "save_distributed_checkpoint", lambda: ModelParallelStrategy(save_distributed_checkpoint=1)),
    "process_group_backend": lambda tmp: ModelParallelStrategy(process_group_backend="mpi").process_group_backend
    == "mpi" and ModelParallelStrategy().process_group_backend == "gloo",
    "timeout": lambda tmp: ModelParallelStrategy(timeout=timedelta(seconds=5))._timeout == timedelta(seconds=5),
}
