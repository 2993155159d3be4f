"""fulmen.utilities.throughput: `Throughput`'s metrics and `measure_flops`.

Expected values were computed with Lightning 2.6.6's `Throughput` / `measure_flops` on the same inputs.
"""

import pytest
import torch

from fulmen.utilities import measure_flops as exported_measure_flops
from fulmen.utilities.throughput import Throughput, get_available_flops, measure_flops


def _fed(n, **kwargs):
    throughput = Throughput(**kwargs)
    for i in range(1, n + 1):
        throughput.update(time=i * 0.5 + i * i * 0.1, batches=i, samples=i * 4, lengths=i * 40, flops=10 * i)
    return throughput


def test_totals_only_until_the_window_is_full():
    assert _fed(2, window_size=3).compute() == pytest.approx({"time": 1.4, "batches": 2, "samples": 8, "lengths": 80})


def test_rates_over_the_window_with_several_devices():
    metrics = _fed(4, available_flops=50, world_size=2, window_size=3, separator="|").compute()
    assert list(metrics) == ["time", "batches", "samples", "lengths", "device|batches_per_sec",
                             "device|samples_per_sec", "batches_per_sec", "samples_per_sec", "device|items_per_sec",
                             "items_per_sec", "flops_per_sec", "device|flops_per_sec", "device|mfu"]
    assert metrics == pytest.approx({
        "time": 3.6, "batches": 4, "samples": 16, "lengths": 160, "device|batches_per_sec": 0.9090909090909091,
        "device|samples_per_sec": 3.6363636363636362, "batches_per_sec": 1.8181818181818181,
        "samples_per_sec": 7.2727272727272725, "device|items_per_sec": 36.36363636363636,
        "items_per_sec": 72.72727272727272, "flops_per_sec": 63.63636363636363,
        "device|flops_per_sec": 31.818181818181817, "device|mfu": 0.6363636363636364})


def test_one_device_has_no_global_rates():
    metrics = _fed(3, window_size=3).compute()
    assert "device/samples_per_sec" in metrics and "samples_per_sec" not in metrics
    assert "device/mfu" not in metrics  # no available_flops given


def test_reset_forgets_the_updates():
    throughput = _fed(4, window_size=3)
    throughput.reset()
    throughput.update(time=0.1, batches=1, samples=1)
    assert throughput.compute() == {"time": 0.1, "batches": 1, "samples": 1}


@pytest.mark.parametrize(("update", "match"), [
    (dict(time=5, batches=5, samples=3), r"`samples` \(3\) must be at least `batches` \(5\)"),
    (dict(time=5, batches=5, samples=20, lengths=10), r"`lengths` \(10\) must be at least `samples` \(20\)"),
    (dict(time=1, batches=5, samples=30), "must increase"),
])
def test_bad_updates_are_clear_errors(update, match):
    throughput = _fed(2, window_size=3)
    with pytest.raises(ValueError, match=match):
        throughput.update(**update)


@pytest.mark.parametrize("kwargs", [dict(window_size=1), dict(world_size=0)])
def test_bad_arguments_are_clear_errors(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Throughput(**kwargs)


def test_measure_flops_on_the_meta_device():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
        x = torch.randn(16, 32)
    assert measure_flops(model, lambda: model(x)) == 81920
    assert measure_flops(model, lambda: model(x), torch.Tensor.sum) == 180224
    assert exported_measure_flops is measure_flops  # `from fulmen.utilities import measure_flops`, as Lightning


def test_no_available_flops_on_the_cpu():
    assert get_available_flops(torch.device("cpu"), torch.float32) is None


def test_available_flops_of_a_known_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    cuda = torch.device("cuda", 0)
    assert get_available_flops(cuda, torch.bfloat16) == 312e12
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert get_available_flops(cuda, torch.float32) == 19.5e12
        torch.set_float32_matmul_precision("high")  # float32 matmuls run as TensorFloat-32
        assert get_available_flops(cuda, torch.float32) == 156e12
    finally:
        torch.set_float32_matmul_precision(previous)


def test_available_flops_of_an_unknown_gpu_warns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Future GPU")
    with pytest.warns(UserWarning, match="FLOPs not found for 'Some Future GPU'"):
        assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) is None
