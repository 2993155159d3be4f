"""How `FSDPStrategy` shards a module with FSDP2: its constructor options checked and turned into `fully_shard`
arguments, the device mesh, activation checkpointing, and materialising meta-device parameters shard by shard.

Owns: what Lightning's FSDP1 options mean under FSDP2 (`sharding_strategy` → `reshard_after_forward` and mesh
shape, `cpu_offload` → `CPUOffloadPolicy`, `mixed_precision` → `MixedPrecisionPolicy`, wrap policies → which
submodules get their own `fully_shard`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")


def sharding_strategy_name(value: Any) -> str:
    """The upper-case name of `sharding_strategy` (a string or torch's FSDP1 `ShardingStrategy` enum)."""
    name = getattr(value, "name", value)
    if not isinstance(name, str) or name.upper() not in SHARDING_STRATEGIES:
        raise ValueError(f"`FSDPStrategy(sharding_strategy={value!r})` is invalid; use one of "
                         f"{', '.join(SHARDING_STRATEGIES[:4])}.")
    return name.upper()


def offload_policy(cpu_offload: Any) -> Any:
    """`cpu_offload` (bool, FSDP1 `CPUOffload` or FSDP2 `CPUOffloadPolicy`) as an FSDP2 offload policy or None."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

    if cpu_offload is None or cpu_offload is False:
        return None
    if isinstance(cpu_offload, OffloadPolicy):
        return cpu_offload
    if cpu_offload is True or getattr(cpu_offload, "offload_params", None) is not None:
        if not (cpu_offload is True or cpu_offload.offload_params):
            return None
        # Pinned memory needs an accelerator; on a CPU-only machine the offloaded shards stay pageable.
        return CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    raise TypeError(f"`FSDPStrategy(cpu_offload={cpu_offload!r})` is invalid; pass a bool, "
                    "`torch.distributed.fsdp.CPUOffload(offload_params=...)` or `CPUOffloadPolicy()`.")


def mixed_precision_policy(mixed_precision: Any) -> Any:
    """`mixed_precision` (FSDP2 `MixedPrecisionPolicy` or FSDP1 `MixedPrecision`) as a `MixedPrecisionPolicy`."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if mixed_precision is None or isinstance(mixed_precision, MixedPrecisionPolicy):
        return mixed_precision
    if hasattr(mixed_precision, "param_dtype") and hasattr(mixed_precision, "buffer_dtype"):
        buffer_dtype = mixed_precision.buffer_dtype
        if buffer_dtype is not None and buffer_dtype != mixed_precision.param_dtype:
            raise ValueError("`FSDPStrategy(mixed_precision=MixedPrecision(buffer_dtype=...))`: FSDP2 does not cast "
                             "buffers separately; leave `buffer_dtype` unset or equal to `param_dtype`.")
        return MixedPrecisionPolicy(param_dtype=mixed_precision.param_dtype,
                                    reduce_dtype=mixed_precision.reduce_dtype)
    raise TypeError(f"`FSDPStrategy(mixed_precision={mixed_precision!r})` is invalid; pass "
                    "`torch.distributed.fsdp.MixedPrecisionPolicy(...)` (or FSDP1's `MixedPrecision`).")


def module_predicate(policy: Any, argument: str) -> Callable[[nn.Module, int], bool] | None:
    """A test `(module, numel not yet in a sharded child) -> bool` for a wrap policy: a set/list/tuple of layer
    classes, or a callable such as torch's `ModuleWrapPolicy` or `size_based_auto_wrap_policy`."""
    if policy is None:
        return None
    if isinstance(policy, type) and issubclass(policy, nn.Module):
        policy = {policy}
    if isinstance(policy, (set, frozenset, list, tuple)):
        classes = tuple(policy)
        bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, nn.Module))]
        if bad:
            raise TypeError(f"`FSDPStrategy({argument}=...)` holds {bad!r}; a set of `nn.Module` classes is expected.")
        return lambda module, numel: isinstance(module, classes)
    if callable(policy):
        # torch's FSDP1 policies answer "wrap this module?" when called with recurse=False.
        return lambda module, numel: bool(policy(module=module, recurse=False, nonwrapped_numel=numel))
    raise TypeError(f"`FSDPStrategy({argument}={policy!r})` is invalid; pass a set of layer classes or a callable "
                    "policy.")


def fully_shard_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Extra `FSDPStrategy(**kwargs)` that go to every `fully_shard` call; anything else is refused."""
    from torch.distributed.fsdp import fully_shard

    accepted = set(inspect.signature(fully_shard).parameters) - {"module", "mesh", "reshard_after_forward",
                                                                 "mp_policy", "offload_policy"}
    extra = dict(kwargs)
    if extra.pop("use_orig_params", True) is not True:
        raise ValueError("`FSDPStrategy(use_orig_params=False)` is not supported: FSDP2 always keeps the original "
                         "parameters (as DTensors); remove the argument.")
    unknown = sorted(set(extra) - accepted)
    if unknown:
        raise TypeError(f"`FSDPStrategy` got unexpected keyword argument(s) {unknown}: extra keywords go to "
                        f"`torch.distributed.fsdp.fully_shard`, which accepts {sorted(accepted)}.")
    return extra


def build_mesh(strategy_name: str, device_mesh: Any, world_size: int, num_nodes: int, device_type: str) -> Any:
    """The DeviceMesh to shard over: 1-D over all ranks for FULL_SHARD/SHARD_GRAD_OP; 2-D (replicate, shard) for
    HYBRID_SHARD (replicate across nodes, shard within one) and NO_SHARD (shard dimension of size 1)."""
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

    if isinstance(device_mesh, DeviceMesh):
        return device_mesh
    hybrid = strategy_name in ("HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
    if strategy_name == "NO_SHARD":
        shape: tuple[int, ...] = (world_size, 1)
    elif device_mesh is not None:
        shape = tuple(device_mesh)
    elif hybrid:
        shape = (num_nodes, world_size // num_nodes)
    else:
        shape = (world_size,)
    if hybrid and len(shape) != 2:
        raise ValueError(f"`sharding_strategy='HYBRID_SHARD'` needs a 2-D mesh (replicate, shard); "
                         f"`device_mesh={device_mesh!r}` is not one. Pass `device_mesh=(replicas, shards)`.")
    size = 1
    for dim in shape:
        size *= dim
    if size != world_size:
        raise ValueError(f"The device mesh {shape} holds {size} processes but the job has {world_size}; pass a "
                         f"`device_mesh` whose dimensions multiply to {world_size}.")
    if len(shape) == 2:
        return init_device_mesh(device_type, shape, mesh_dim_names=("replicate", "shard"))
    if len(shape) != 1:
        raise ValueError(f"`FSDPStrategy(device_mesh={device_mesh!r})` must have 1 or 2 dimensions.")
    return init_device_mesh(device_type, shape)


def apply_activation_checkpointing(module: nn.Module, predicate: Callable[[nn.Module, int], bool] | None) -> None:
    """Wrap the submodules `predicate` selects in torch's (non-reentrant) activation checkpoint wrapper."""
    if predicate is None:
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointWrapper,
        apply_activation_checkpointing as torch_apply,
    )

    if any(isinstance(m, CheckpointWrapper) for m in module.modules()):
        return  # already applied (a second `setup` of the same module)
    torch_apply(module, check_fn=lambda m: m is not module and predicate(m, _numel(m)))


def shard_module(module: nn.Module, predicate: Callable[[nn.Module, int], bool] | None, **options: Any) -> None:
    """`fully_shard` the submodules `predicate` selects, children before parents, then the root."""
    from torch.distributed.fsdp import fully_shard

    def visit(current: nn.Module) -> int:
        # Returns the number of parameters under `current` that no sharded descendant holds yet.
        numel = sum(p.numel() for p in current.parameters(recurse=False))
        for child in current.children():
            numel += visit(child)
        if current is not module and predicate is not None and predicate(current, numel):
            fully_shard(current, **options)
            return 0
        return numel

    visit(module)
    fully_shard(module, **options)


def has_meta_tensors(module: nn.Module) -> bool:
    return any(t.is_meta for t in (*module.parameters(), *module.buffers()))


def materialize(module: nn.Module, device: torch.device) -> None:
    """Allocate meta-device tensors on `device` (after sharding: only this rank's shards) and initialise them
    with each owning module's `reset_parameters`."""
    owners = [m for m in module.modules()
              if any(t.is_meta for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)))]
    missing = sorted({type(m).__name__ for m in owners if not callable(getattr(m, "reset_parameters", None))})
    if missing:
        raise TypeError(f"Parameters built on the meta device (`trainer.init_module(empty_init=True)`) are "
                        f"initialised with their module's `reset_parameters()`, which {', '.join(missing)} lacks; "
                        "implement it or build the model without `empty_init=True`.")
    if not all(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise ValueError("Part of the model is on the meta device and part is not; build all of it inside "
                         "`trainer.init_module(empty_init=True)` / `configure_model`, or none of it.")
    module.to_empty(device=device)  # FSDP2 re-points its shards at the new storage
    with torch.no_grad():
        for owner in owners:
            owner.reset_parameters()


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
