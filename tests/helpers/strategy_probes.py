"""Probes for the constructor parameters of `SLURMEnvironment`, `Strategy`, `ParallelStrategy` and
`AsyncCheckpointIO` (see tests/test_signatures_components.py): each shows the parameter's effect or its clear error."""

import signal
import threading

import torch

from fulmen.accelerators import CPUAccelerator
from fulmen.checkpoint_io import AsyncCheckpointIO, CheckpointIO
from fulmen.plugins.environments import LightningEnvironment, SLURMEnvironment
from fulmen.precision import DoublePrecision
from fulmen.strategies import ParallelStrategy, Strategy
from fulmen.strategies.slurm_requeue import SLURMRequeue
from helpers.signature_probes import fit, raises, trainer_only


class _SetupRecordingCPU(CPUAccelerator):
    def __init__(self):
        self.devices = []

    def setup_device(self, device):
        self.devices.append(device)


def _accelerator_set_up(make_strategy):
    accelerator = _SetupRecordingCPU()
    strategy = make_strategy(accelerator)
    strategy.setup_environment()
    return strategy.accelerator is accelerator and accelerator.devices == [torch.device("cpu")]


def _handler_installed(environment):
    trainer = trainer_only(plugins=[environment])
    requeue = SLURMRequeue.for_trainer(trainer)
    return requeue is not None and requeue._signal


class _ThreadRecordingIO(CheckpointIO):
    def __init__(self):
        super().__init__()
        self.threads = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.threads.append(threading.current_thread())
        super().save_checkpoint(checkpoint, path, storage_options)


def _async_saves_through(tmp):
    inner = _ThreadRecordingIO()
    trainer = fit(tmp, plugins=[AsyncCheckpointIO(checkpoint_io=inner)])
    trainer.save_checkpoint(tmp / "a.ckpt")
    trainer.strategy.checkpoint_io.teardown()
    return (tmp / "a.ckpt").exists() and inner.threads and inner.threads[-1] is not threading.main_thread()


SLURM_ENVIRONMENT = {
    "auto_requeue": lambda tmp: _handler_installed(SLURMEnvironment(auto_requeue=True)) == signal.SIGUSR1
    and SLURMRequeue.for_trainer(trainer_only(plugins=[SLURMEnvironment(auto_requeue=False)])) is None,
    "requeue_signal": lambda tmp: _handler_installed(SLURMEnvironment(requeue_signal=signal.SIGUSR2)) == signal.SIGUSR2,
}

STRATEGY = {
    "accelerator": lambda tmp: _accelerator_set_up(lambda acc: Strategy(accelerator=acc)),
    "checkpoint_io": lambda tmp: (lambda io: Strategy(checkpoint_io=io).checkpoint_io is io)(CheckpointIO()),
    "precision_plugin": lambda tmp: (lambda plugin: trainer_only(strategy=Strategy(precision_plugin=plugin))
                                     .precision_plugin is plugin)(DoublePrecision()),
}

PARALLEL_STRATEGY = {
    "accelerator": lambda tmp: _accelerator_set_up(lambda acc: ParallelStrategy(accelerator=acc)),
    "parallel_devices": lambda tmp: ParallelStrategy(parallel_devices=[torch.device("meta")]).root_device
    == torch.device("meta"),
    "cluster_environment": lambda tmp: ParallelStrategy(
        cluster_environment=LightningEnvironment(devices_per_node=3)).world_size == 3,
    "checkpoint_io": lambda tmp: (lambda io: ParallelStrategy(checkpoint_io=io).checkpoint_io is io)(CheckpointIO()),
    "precision_plugin": lambda tmp: (lambda plugin: ParallelStrategy(precision_plugin=plugin).precision_plugin
                                     is plugin)(DoublePrecision()),
}

ASYNC_CHECKPOINT_IO = {
    "checkpoint_io": lambda tmp: _async_saves_through(tmp)
    and raises(TypeError, "CheckpointIO instance", lambda: AsyncCheckpointIO(checkpoint_io="disk")),
}
