"""In-band checks: fulmen's own collectives carry each rank's (sequence number, call site) in the same message.

Two ranks that pair different collectives (one skipped a `self.log(..., sync_dist=True)`) would otherwise exchange
wrong values silently, or abort on a size mismatch one collective later. Each all-reduce gets four extra float64
elements `a, a*a, b, b*b` (a: the call site's number, b: the sequence number): after a SUM every rank reads
`W*a, W*a*a` only if all `a` were equal (the mean and the mean square agree only without spread); after MAX/MIN the
pair `a, -a` does the same. Broadcasts carry the sender's pair; barriers become a check-only all-reduce. No extra
collective, no store traffic: the cost is a few elements on messages that are sent anyway.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Callable

import torch
import torch.distributed as dist

_EXACT = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32)  # exact in float64
_SMALL = 64  # larger tensors (a user's own `strategy.reduce` of a big tensor) keep their exact dtype and go unchecked


def site_number(op: str, code: Any, line: int, bits: int) -> int:
    """The same number on every rank for the same call site (file name, function, line, operation)."""
    key = f"{op}|{os.path.basename(code.co_filename)}|{getattr(code, 'co_qualname', code.co_name)}|{line}"
    return zlib.crc32(key.encode()) % ((1 << bits) - 1) + 1


def _check(a: int, b: int, negate: bool) -> list[float]:
    return [a, -a, b, -b] if negate else [a, a * a, b, b * b]


def _agrees(values: list[float], a: int, b: int, op: Any, world: int) -> bool:
    if op == dist.ReduceOp.SUM:
        return values == [world * a, world * a * a, world * b, world * b * b]
    return values == [a, -a, b, -b]


def checked_methods(strategy: Any, bits: int) -> dict[str, Callable[..., Any]]:
    """`{name: fn(a, b, *args, **kwargs) -> (result, agreed)}` for the collectives of `strategy` that are fulmen's
    own implementations (a user's override of one keeps its behaviour and is only numbered). CPU tensors only: the
    detector uses these for CPU (gloo) runs."""
    from fulmen.strategies.process_group import REDUCE_OPS, ProcessGroupStrategy, reduce_op_name
    from fulmen.strategies.parallel import ParallelStrategy

    kind = type(strategy)
    methods: dict[str, Callable[..., Any]] = {}
    world = dist.get_world_size()

    if getattr(kind, "reduce", None) is ProcessGroupStrategy.reduce:
        buffer = torch.zeros(_SMALL + 4, dtype=torch.float64)
        view = buffer.numpy()  # written and read through numpy: far cheaper than building tensors per call
        slices = {size: buffer[:size + 4] for size in range(1, _SMALL + 1)}

        def reduce(a: int, b: int, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> tuple[Any, bool]:
            op_name = reduce_op_name(reduce_op)
            if not isinstance(tensor, torch.Tensor) or group is not None or op_name not in REDUCE_OPS \
                    or not 0 < tensor.numel() <= _SMALL or tensor.dtype not in _EXACT or tensor.device.type != "cpu":
                return ProcessGroupStrategy.reduce(strategy, tensor, group, reduce_op), True
            op = getattr(dist.ReduceOp, REDUCE_OPS[op_name])
            dtype = tensor.dtype if tensor.is_floating_point() or op_name not in ("mean", "avg") else torch.float32
            size = tensor.numel()
            view[:size] = [tensor.item()] if size == 1 else tensor.detach().reshape(-1).tolist()
            view[size:size + 4] = _check(a, b, op != dist.ReduceOp.SUM)
            dist.all_reduce(slices[size], op=op)
            out = view[:size + 4].tolist()
            if size == 1:
                result = torch.full(tensor.shape, out[0], dtype=dtype)
            else:
                result = torch.tensor(out[:size], dtype=dtype).reshape(tensor.shape)
            if op_name in ("mean", "avg"):
                result = result / world
            return result, _agrees(out[size:], a, b, op, world)

        methods["reduce"] = reduce

    if getattr(kind, "barrier", None) is ProcessGroupStrategy.barrier:
        def barrier(a: int, b: int, name: str | None = None) -> tuple[None, bool]:
            payload = torch.tensor(_check(a, b, False), dtype=torch.float64)
            dist.all_reduce(payload)
            return None, _agrees(payload.tolist(), a, b, dist.ReduceOp.SUM, world)

        methods["barrier"] = barrier

    if getattr(kind, "broadcast", None) is ProcessGroupStrategy.broadcast:
        def broadcast(a: int, b: int, obj: Any, src: int = 0) -> tuple[Any, bool]:
            holder = [(obj, a, b)]
            dist.broadcast_object_list(holder, src=src)
            value, sent_a, sent_b = holder[0]
            return value, (sent_a, sent_b) == (a, b)

        methods["broadcast"] = broadcast

    if getattr(kind, "reduce_boolean_decision", None) is ParallelStrategy.reduce_boolean_decision:
        def reduce_boolean_decision(a: int, b: int, decision: bool, all: bool = True) -> tuple[bool, bool]:
            payload = torch.tensor([int(decision), *_check(a, b, False)], dtype=torch.float64)
            dist.all_reduce(payload)
            out = payload.tolist()
            votes = int(out[0])
            return (votes == world if all else votes > 0), _agrees(out[1:], a, b, dist.ReduceOp.SUM, world)

        methods["reduce_boolean_decision"] = reduce_boolean_decision
    return methods
