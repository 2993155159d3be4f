"""Cluster environments that are never detected from a plain process (Kubeflow) or need a job launcher's
files or packages (LSF's `jsrun`, MPI through `mpi4py`). Pass one as `Trainer(plugins=[...])`; LSF and MPI
are also detected (see `detect`)."""

from __future__ import annotations

import os
import socket
from typing import Any

from fulmen.strategies.cluster_environments import ClusterEnvironment, _launcher_decides, find_free_port


class KubeflowEnvironment(ClusterEnvironment):
    """A Kubeflow PyTorchJob: one process per pod; WORLD_SIZE, RANK and MASTER_ADDR/PORT are set by the operator.
    It cannot be detected: pass it as `Trainer(plugins=[KubeflowEnvironment()])`."""

    creates_processes_externally = True

    def __init__(self) -> None:  # the operator states every size and rank: nothing to configure
        super().__init__()

    @property
    def main_address(self) -> str:
        return os.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        return int(os.environ["MASTER_PORT"])

    @staticmethod
    def detect() -> bool:
        raise NotImplementedError("The Kubeflow environment cannot be detected; pass "
                                  "`Trainer(plugins=[KubeflowEnvironment()])`.")

    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    def set_world_size(self, size: int) -> None:
        _launcher_decides("KubeflowEnvironment", "world size", size, self.world_size())

    def global_rank(self) -> int:
        return int(os.environ["RANK"])

    def set_global_rank(self, rank: int) -> None:
        _launcher_decides("KubeflowEnvironment", "global rank", rank, self.global_rank())

    def local_rank(self) -> int:
        return 0  # one process per pod

    def node_rank(self) -> int:
        return self.global_rank()


class LSFEnvironment(ClusterEnvironment):
    """An LSF job started with `jsrun`: ranks from JSM_NAMESPACE_RANK/LOCAL_RANK/SIZE, hosts from the rank
    file named by LSB_DJOB_RANKFILE (its first line is the launch node; the next host runs rank 0), the port
    from LSB_JOBID. Sets MASTER_ADDR/MASTER_PORT for the process group; `teardown` removes them again."""

    creates_processes_externally = True

    def __init__(self) -> None:
        super().__init__()
        hosts = self._read_hosts()
        self._main_address = hosts[0]
        self._main_port = self._port()
        self._node_rank = list(dict.fromkeys(hosts)).index(socket.gethostname()) \
            if socket.gethostname() in hosts else 0
        self._set_by_us: dict[str, str | None] = {}
        for key, value in (("MASTER_ADDR", self._main_address), ("MASTER_PORT", str(self._main_port))):
            self._set_by_us[key] = os.environ.get(key)
            os.environ[key] = value

    @staticmethod
    def detect() -> bool:
        required = ("LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")
        return all(key in os.environ for key in required)

    @staticmethod
    def _read_hosts() -> list[str]:
        rankfile = os.environ.get("LSB_DJOB_RANKFILE")
        if not rankfile:
            raise ValueError("LSFEnvironment needs LSB_DJOB_RANKFILE (set by LSF); start the job with `jsrun`.")
        with open(rankfile) as file:
            lines = [line.strip() for line in file if line.strip()]
        return lines[1:]  # the first line is the launch node, which runs no rank

    @staticmethod
    def _port() -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        if "LSB_JOBID" in os.environ:
            return 10000 + int(os.environ["LSB_JOBID"]) % 1000  # the same on every node, without communication
        raise ValueError("LSFEnvironment needs LSB_JOBID (set by LSF) or MASTER_PORT.")

    @property
    def main_address(self) -> str:
        return self._main_address

    @property
    def main_port(self) -> int:
        return self._main_port

    def world_size(self) -> int:
        return int(_required("JSM_NAMESPACE_SIZE", "world size"))

    def set_world_size(self, size: int) -> None:
        _launcher_decides("LSFEnvironment", "world size", size, self.world_size())

    def global_rank(self) -> int:
        return int(_required("JSM_NAMESPACE_RANK", "global rank"))

    def set_global_rank(self, rank: int) -> None:
        _launcher_decides("LSFEnvironment", "global rank", rank, self.global_rank())

    def local_rank(self) -> int:
        return int(_required("JSM_NAMESPACE_LOCAL_RANK", "local rank"))

    def node_rank(self) -> int:
        return self._node_rank

    def teardown(self) -> None:
        """Put MASTER_ADDR/MASTER_PORT back as they were before this environment set them."""
        for key, previous in self._set_by_us.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self._set_by_us = {}


class MPIEnvironment(ClusterEnvironment):
    """Processes started by `mpirun`/`mpiexec`: ranks from MPI's world communicator (needs `mpi4py`)."""

    creates_processes_externally = True

    def __init__(self) -> None:
        super().__init__()
        self._comm_world = _mpi().COMM_WORLD
        self._node_rank: int | None = None
        self._local_rank: int | None = None
        self._main_address: str | None = None
        self._main_port: int | None = None

    @staticmethod
    def detect() -> bool:
        try:
            return _mpi().COMM_WORLD.Get_size() > 1
        except ModuleNotFoundError:
            return False

    @property
    def main_address(self) -> str:
        if self._main_address is None:
            self._main_address = self._comm_world.bcast(socket.gethostname(), root=0)
        return self._main_address

    @property
    def main_port(self) -> int:
        if self._main_port is None:
            self._main_port = self._comm_world.bcast(find_free_port(), root=0)
        return self._main_port

    def world_size(self) -> int:
        return self._comm_world.Get_size()

    def set_world_size(self, size: int) -> None:
        _launcher_decides("MPIEnvironment", "world size", size, self.world_size())

    def global_rank(self) -> int:
        return self._comm_world.Get_rank()

    def set_global_rank(self, rank: int) -> None:
        _launcher_decides("MPIEnvironment", "global rank", rank, self.global_rank())

    def local_rank(self) -> int:
        if self._local_rank is None:
            self._learn_hosts()
        return self._local_rank

    def node_rank(self) -> int:
        if self._node_rank is None:
            self._learn_hosts()
        return self._node_rank

    def _learn_hosts(self) -> None:
        # Every rank learns every rank's host: the node rank is the host's order of appearance, the local rank
        # counts the lower ranks on the same host.
        hostname = socket.gethostname()
        hosts = self._comm_world.allgather(hostname)
        self._node_rank = list(dict.fromkeys(hosts)).index(hostname)
        self._local_rank = hosts[:self.global_rank()].count(hostname)


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ModuleNotFoundError("MPIEnvironment needs the `mpi4py` package: `pip install mpi4py` (with an MPI "
                                  "library installed), then start the job with `mpirun`.") from error
    return MPI


def _required(key: str, what: str) -> str:
    value = os.environ.get(key)
    if value is None:
        raise ValueError(f"LSFEnvironment: cannot determine the {what}: {key} is not set; start the job with "
                         "`jsrun`.")
    return value
