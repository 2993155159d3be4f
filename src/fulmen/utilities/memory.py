"""Detaching outputs and recognising out-of-memory errors (Lightning's `utilities.memory`)."""

from __future__ import annotations

import gc
from typing import Any

import torch
from torch import Tensor

from fulmen.utilities.apply_func import apply_to_collection

__all__ = ["garbage_collection_cuda", "is_cuda_out_of_memory", "is_cudnn_snafu", "is_oom_error", "is_out_of_cpu_memory",
           "recursive_detach"]


def recursive_detach(in_dict: Any, to_cpu: bool = False) -> Any:
    """`in_dict` (any nesting of dicts, lists, tuples) with every tensor detached, and moved to the CPU if
    `to_cpu`; other values are kept as they are."""

    def detach(tensor: Tensor) -> Tensor:
        tensor = tensor.detach()
        return tensor.cpu() if to_cpu else tensor

    return apply_to_collection(in_dict, Tensor, detach)


def _single_message(exception: BaseException) -> str | None:
    # torch raises these as RuntimeError with exactly one string argument.
    if isinstance(exception, RuntimeError) and len(exception.args) == 1 and isinstance(exception.args[0], str):
        return exception.args[0]
    return None


def is_cuda_out_of_memory(exception: BaseException) -> bool:
    """Whether `exception` is torch's CUDA out-of-memory RuntimeError."""
    message = _single_message(exception)
    return message is not None and "CUDA" in message and "out of memory" in message


def is_cudnn_snafu(exception: BaseException) -> bool:
    """Whether `exception` is cuDNN's CUDNN_STATUS_NOT_SUPPORTED error (raised when memory runs out)."""
    message = _single_message(exception)
    return message is not None and "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED." in message


def is_out_of_cpu_memory(exception: BaseException) -> bool:
    """Whether `exception` is torch's failure to allocate CPU memory."""
    message = _single_message(exception)
    return message is not None and "DefaultCPUAllocator: can't allocate memory" in message


def is_oom_error(exception: BaseException) -> bool:
    """Whether `exception` is any of the out-of-memory errors above."""
    return is_cuda_out_of_memory(exception) or is_cudnn_snafu(exception) or is_out_of_cpu_memory(exception)


def garbage_collection_cuda() -> None:
    """Collect Python garbage, then release PyTorch's cached CUDA memory (an out-of-memory error there is
    swallowed; any other error is raised)."""
    gc.collect()
    try:
        torch.cuda.empty_cache()
    except RuntimeError as error:
        if not is_oom_error(error):
            raise
