"""`fulmen.utilities.memory`: detaching collections and telling out-of-memory errors apart."""

import pytest
import torch

from fulmen.utilities import memory


def test_recursive_detach_detaches_every_tensor_and_keeps_the_rest():
    value = torch.ones(2, requires_grad=True) * 2
    output = memory.recursive_detach({"a": value, "b": [value, (value, 3)], "c": "text"})
    assert not output["a"].requires_grad and not output["b"][1][0].requires_grad
    assert isinstance(output["b"][1], tuple) and output["b"][1][1] == 3 and output["c"] == "text"
    assert torch.equal(output["a"], value.detach())
    assert value.requires_grad  # the input is not changed


def test_recursive_detach_to_cpu():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    output = memory.recursive_detach({"x": torch.ones(1, device=device, requires_grad=True)}, to_cpu=True)
    assert output["x"].device.type == "cpu" and not output["x"].requires_grad


@pytest.mark.parametrize(("message", "cuda", "cudnn", "cpu"), [
    ("CUDA out of memory. Tried to allocate 2.00 GiB", True, False, False),
    ("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input.",
     False, True, False),
    ("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes",
     False, False, True),
    ("shape mismatch", False, False, False),
])
def test_out_of_memory_errors_are_recognised(message, cuda, cudnn, cpu):
    error = RuntimeError(message)
    assert memory.is_cuda_out_of_memory(error) is cuda
    assert memory.is_cudnn_snafu(error) is cudnn
    assert memory.is_out_of_cpu_memory(error) is cpu
    assert memory.is_oom_error(error) is (cuda or cudnn or cpu)


def test_only_single_message_runtime_errors_count():
    assert not memory.is_oom_error(ValueError("CUDA out of memory"))
    assert not memory.is_oom_error(RuntimeError("CUDA out of memory", 2))


def test_garbage_collection_cuda_swallows_only_out_of_memory(monkeypatch):
    memory.garbage_collection_cuda()  # no CUDA, or CUDA with nothing cached: a no-op either way

    def out_of_memory():
        raise RuntimeError("CUDA out of memory. Tried to allocate 1 byte")

    monkeypatch.setattr(torch.cuda, "empty_cache", out_of_memory)
    memory.garbage_collection_cuda()

    def broken():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "empty_cache", broken)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        memory.garbage_collection_cuda()
