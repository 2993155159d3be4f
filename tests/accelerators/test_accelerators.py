"""`fulmen.accelerators` (Lightning's path) and `trainer.accelerator`, used as a user would."""

import pytest
import torch

import fulmen as L
from fulmen.accelerators import (
    Accelerator,
    CPUAccelerator,
    CUDAAccelerator,
    MPSAccelerator,
    find_usable_cuda_devices,
)
from fulmen.utilities.exceptions import MisconfigurationException
from tests.helpers.tiny import TinyModule, make_loader

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answers of a machine without CUDA")


def test_accelerator_is_abstract_and_the_kinds_subclass_it():
    with pytest.raises(TypeError, match="abstract"):
        Accelerator()
    for kind, name in ((CPUAccelerator, "cpu"), (CUDAAccelerator, "cuda"), (MPSAccelerator, "mps")):
        assert issubclass(kind, Accelerator) and kind.name() == name


def test_cpu_accelerator_static_methods():
    assert CPUAccelerator.is_available() and CPUAccelerator.auto_device_count() == 1
    assert CPUAccelerator.parse_devices(3) == 3 and CPUAccelerator.parse_devices("2") == 2
    assert CPUAccelerator.get_parallel_devices(2) == [torch.device("cpu")] * 2
    for bad in (0, -1, "-1", "auto", 1.5, True):
        with pytest.raises(TypeError, match="should be an int > 0"):
            CPUAccelerator.parse_devices(bad)


def test_cpu_accelerator_device_setup_and_stats():
    accelerator = CPUAccelerator()
    accelerator.setup_device(torch.device("cpu"))
    accelerator.teardown()
    with pytest.raises(MisconfigurationException, match="Device should be CPU"):
        accelerator.setup_device(torch.device("meta"))
    try:
        import psutil  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="psutil"):
            accelerator.get_device_stats("cpu")
    else:
        assert set(accelerator.get_device_stats("cpu")) == {"cpu_vm_percent", "cpu_percent", "cpu_swap_percent"}


def test_cuda_accelerator_parses_device_flags_against_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert CUDAAccelerator.is_available() and CUDAAccelerator.auto_device_count() == 4
    assert CUDAAccelerator.parse_devices(2) == [0, 1] and CUDAAccelerator.parse_devices("2") == [0, 1]
    assert CUDAAccelerator.parse_devices(-1) == [0, 1, 2, 3] == CUDAAccelerator.parse_devices("-1")
    assert CUDAAccelerator.parse_devices("1,3") == [1, 3] and CUDAAccelerator.parse_devices([2]) == [2]
    for none in (0, "0", None, []):
        assert CUDAAccelerator.parse_devices(none) is None
    with pytest.raises(MisconfigurationException, match="You requested gpu"):
        CUDAAccelerator.parse_devices([5])
    with pytest.raises(MisconfigurationException, match="You requested gpu"):
        CUDAAccelerator.parse_devices(6)
    assert CUDAAccelerator.get_parallel_devices([0, 2]) == [torch.device("cuda", 0), torch.device("cuda", 2)]


def test_cuda_accelerator_without_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert not CUDAAccelerator.is_available() and CUDAAccelerator.auto_device_count() == 0
    with pytest.raises(MisconfigurationException, match="none are available"):
        CUDAAccelerator.parse_devices(-1)
    with pytest.raises(ValueError, match="no visible CUDA devices"):
        find_usable_cuda_devices(2)
    assert find_usable_cuda_devices(0) == []
    with pytest.raises(MisconfigurationException, match="Device should be GPU"):
        CUDAAccelerator().setup_device(torch.device("cpu"))


@no_cuda
def test_trainer_refuses_a_cuda_accelerator_object_without_cuda():
    with pytest.raises(MisconfigurationException, match="not available"):
        L.Trainer(accelerator=CUDAAccelerator())


def test_mps_accelerator_matches_torch_backend():
    available = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    assert MPSAccelerator.is_available() is available and MPSAccelerator.auto_device_count() == 1
    with pytest.raises(MisconfigurationException, match="Device should be MPS"):
        MPSAccelerator().setup_device(torch.device("cpu"))


def test_trainer_accelerator_is_the_object_in_use(tmp_path):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert isinstance(trainer.accelerator, CPUAccelerator)

    given = CPUAccelerator()
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator=given, max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    assert trainer.accelerator is given and trainer.strategy.root_device == torch.device("cpu")
    trainer.fit(TinyModule(), make_loader())
    assert trainer.global_step == 1

    class Elsewhere(CPUAccelerator):
        @staticmethod
        def name():
            return "tpu"

    with pytest.raises(MisconfigurationException, match="'tpu'"):
        L.Trainer(accelerator=Elsewhere())


@needs_cuda
def test_cuda_accelerator_on_a_gpu():
    devices = find_usable_cuda_devices(1)
    assert len(devices) == 1 and devices[0] < torch.cuda.device_count()
    assert find_usable_cuda_devices(-1) == list(range(torch.cuda.device_count()))
    accelerator = CUDAAccelerator()
    accelerator.setup_device(torch.device("cuda", devices[0]))
    assert torch.cuda.current_device() == devices[0]
    assert "allocated_bytes.all.current" in accelerator.get_device_stats(devices[0])
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False)
    assert trainer.accelerator is accelerator and trainer.strategy.root_device.type == "cuda"
