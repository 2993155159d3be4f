"""Gradient clipping by norm over gradients that live on different DTensor meshes.

`torch.nn.utils.clip_grad_norm_` stacks the per-tensor norms, which DTensor refuses across meshes (a
ModelParallelStrategy model mixes 2-D tensor-parallel parameters with data-parallel-only ones). Here each mesh's
gradients get their own norm, the norms become plain tensors and are combined, and every gradient is scaled by
the one coefficient.
"""

from __future__ import annotations

import torch


def _mesh_of(tensor: torch.Tensor):
    return getattr(tensor, "device_mesh", None)


def clip_grad_norm_(parameters: list[torch.Tensor], max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """Clip the gradients of `parameters` (all with a gradient) to a total `norm_type` norm of `max_norm`; return
    the total norm before clipping."""
    first = _mesh_of(parameters[0].grad) if parameters else None
    if all(_mesh_of(p.grad) is first for p in parameters):  # plain tensors, or DTensors on one mesh: PyTorch's own function handles them
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=norm_type)
    from torch.distributed.tensor.experimental import implicit_replication

    groups: dict[int, list[torch.Tensor]] = {}
    for parameter in parameters:
        groups.setdefault(id(_mesh_of(parameter.grad)), []).append(parameter.grad)
    norms = []
    for grads in groups.values():
        norm = torch.nn.utils.get_total_norm(grads, norm_type=norm_type)
        norms.append(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # reduce the partial norms
    norms = torch.stack([n.float() for n in norms])
    norm_type = float(norm_type)
    if norm_type == float("inf"):
        total = norms.max()
    else:
        total = norms.pow(norm_type).sum().pow(1.0 / norm_type)
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # the same formula as PyTorch's
    with torch.no_grad(), implicit_replication():  # a plain scalar tensor acts as replicated on every mesh
        for grads in groups.values():
            for grad in grads:
                grad.mul_(coefficient.to(grad.device, grad.dtype))
    return total
