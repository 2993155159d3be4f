"""Accelerator members Lightning 2.6.6 has: `setup(trainer)` (called by the strategy's setup),
`register_accelerators(registry)`, `CUDAAccelerator.set_nvidia_flags(local_rank)`."""

import os

import fulmen as L
from fulmen.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class Registry:
    def __init__(self):
        self.entries = {}

    def register(self, name, accelerator, description=None, **init_params):
        self.entries[name] = (accelerator, description)


def test_register_accelerators_registers_the_name_and_class():
    registry = Registry()
    for accelerator in (CPUAccelerator, CUDAAccelerator, MPSAccelerator):
        accelerator.register_accelerators(registry)
    assert registry.entries == {"cpu": (CPUAccelerator, "CPUAccelerator"), "cuda": (CUDAAccelerator, "CUDAAccelerator"),
                                "mps": (MPSAccelerator, "MPSAccelerator")}


def test_the_trainers_accelerator_is_set_up_and_torn_down_by_the_strategy(tmp_path):
    calls = []

    class RecordingCPU(CPUAccelerator):
        def setup_device(self, device):
            calls.append(("setup_device", device.type))

        def setup(self, trainer):
            calls.append(("setup", type(trainer).__name__))

        def teardown(self):
            calls.append("teardown")

    quiet_trainer(tmp_path, accelerator=RecordingCPU(), max_steps=1).fit(TinyModule(), make_loader(16))
    assert calls == [("setup_device", "cpu"), ("setup", "Trainer"), "teardown"]


def test_set_nvidia_flags_numbers_gpus_in_bus_order(monkeypatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # restored after the test
    CUDAAccelerator.set_nvidia_flags(0)
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
