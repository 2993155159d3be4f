"""Cluster environments from `fulmen.plugins.environments`: Kubeflow, LSF, MPI (a recording fake of `mpi4py`),
SLURM's job helpers and every environment's `teardown`. Values as Lightning 2.6.6's environments report them for
the same variables (checked in a scratch venv)."""

import signal
import socket
import sys
import types

import pytest
import torch

from fulmen.plugins.environments import (
    KubeflowEnvironment,
    LightningEnvironment,
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from fulmen.strategies import DDPStrategy

_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LSB_JOBID", "LSB_DJOB_RANKFILE",
              "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_RANK", "SLURM_JOB_ID",
              "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in _VARIABLES:
        monkeypatch.delenv(key, raising=False)


def test_kubeflow_reads_the_operators_variables(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "pod-0")
    monkeypatch.setenv("MASTER_PORT", "23456")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    env = KubeflowEnvironment()
    assert (env.main_address, env.main_port, env.world_size(), env.global_rank(), env.local_rank(),
            env.node_rank()) == ("pod-0", 23456, 4, 2, 0, 2)
    assert env.creates_processes_externally
    with pytest.raises(NotImplementedError, match="plugins"):
        KubeflowEnvironment.detect()
    with pytest.raises(ValueError, match="cannot be set"):
        env.set_world_size(8)
    strategy = DDPStrategy(cluster_environment=env, parallel_devices=[torch.device("cpu")])
    assert (strategy.world_size, strategy.global_rank) == (4, 2)


def test_lsf_reads_the_rankfile_and_sets_then_removes_the_address(monkeypatch, tmp_path):
    host = socket.gethostname()
    rankfile = tmp_path / "rankfile"
    rankfile.write_text(f"launch\n{host}\n{host}\nother\n")
    monkeypatch.setenv("LSB_JOBID", "1234")
    monkeypatch.setenv("LSB_DJOB_RANKFILE", str(rankfile))
    monkeypatch.setenv("JSM_NAMESPACE_LOCAL_RANK", "1")
    monkeypatch.setenv("JSM_NAMESPACE_SIZE", "3")
    monkeypatch.setenv("JSM_NAMESPACE_RANK", "1")
    assert LSFEnvironment.detect()
    env = LSFEnvironment()
    assert (env.main_address, env.main_port, env.world_size(), env.global_rank(), env.local_rank(),
            env.node_rank()) == (host, 10234, 3, 1, 1, 0)
    import os

    assert os.environ["MASTER_ADDR"] == host and os.environ["MASTER_PORT"] == "10234"
    env.teardown()
    assert "MASTER_ADDR" not in os.environ and "MASTER_PORT" not in os.environ
    monkeypatch.delenv("JSM_NAMESPACE_RANK")
    with pytest.raises(ValueError, match="JSM_NAMESPACE_RANK"):
        env.global_rank()


def test_mpi_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails as if it were not installed
    with pytest.raises(ModuleNotFoundError, match="pip install mpi4py"):
        MPIEnvironment()
    assert MPIEnvironment.detect() is False


def test_mpi_ranks_from_the_world_communicator(monkeypatch):
    class World:
        def Get_size(self):
            return 4

        def Get_rank(self):
            return 3

        def allgather(self, value):
            return ["a", "a", value, value]

        def bcast(self, value, root=0):
            return "rank0-host" if isinstance(value, str) else 29500

    fake = types.ModuleType("mpi4py")
    fake.MPI = types.SimpleNamespace(COMM_WORLD=World())
    monkeypatch.setitem(sys.modules, "mpi4py", fake)
    env = MPIEnvironment()
    assert MPIEnvironment.detect()
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (4, 3, 1, 1)
    assert (env.main_address, env.main_port) == ("rank0-host", 29500)


def test_slurm_job_helpers_and_requeue_settings(monkeypatch):
    env = SLURMEnvironment()
    assert env.auto_requeue is True and env.requeue_signal == signal.SIGUSR1
    assert SLURMEnvironment(auto_requeue=False, requeue_signal=signal.SIGHUP).requeue_signal == signal.SIGHUP
    assert SLURMEnvironment.job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert (SLURMEnvironment.job_id(), SLURMEnvironment.job_name()) == (4242, "train")
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # interactive allocation: no batch job
    assert SLURMEnvironment.job_id() is None
    assert SLURMEnvironment.resolve_root_node_address("node[03-05,07] other") == "node03"
    assert SLURMEnvironment.resolve_root_node_address("a,b") == "a"
    assert SLURMEnvironment.resolve_root_node_address("host[5]") == "host5"
    with pytest.raises(TypeError, match="True or False"):
        SLURMEnvironment(auto_requeue="yes")


def test_teardown_of_every_environment(monkeypatch):
    import os

    monkeypatch.setenv("WORLD_SIZE", "2")
    LightningEnvironment().teardown()  # Lightning removes WORLD_SIZE
    assert "WORLD_SIZE" not in os.environ
    monkeypatch.setenv("WORLD_SIZE", "2")
    for env in (TorchElasticEnvironment(), SLURMEnvironment()):
        env.teardown()  # they set nothing, so they remove nothing
    assert os.environ["WORLD_SIZE"] == "2"
