"""Where process ranks come from: launched by fulmen itself, by torchrun (torchelastic), or by SLURM.

Owns: reading ranks, world size and the main address/port from the environment of each kind, and
detecting which kind this process runs under. `detect_environment` is the one place that chooses.
"""

from __future__ import annotations

import os
import re
import signal
import socket


class ClusterEnvironment:
    """Ranks and rendezvous address for one process of a job."""

    creates_processes_externally = False

    def __init__(self, num_nodes: int = 1, devices_per_node: int = 1) -> None:
        self._num_nodes = num_nodes
        self._devices_per_node = devices_per_node
        self._world_size: int | None = None  # set by the strategy (`set_world_size`) once it knows the job
        self._global_rank: int | None = None

    @staticmethod
    def detect() -> bool:
        return False

    def world_size(self) -> int:
        if self._world_size is not None:
            return self._world_size
        return int(os.environ.get("WORLD_SIZE", self._num_nodes * self._devices_per_node))

    def set_world_size(self, size: int) -> None:
        """Record the job's world size (the strategy calls this when fulmen itself starts the processes)."""
        self._world_size = size

    def global_rank(self) -> int:
        if self._global_rank is not None:
            return self._global_rank
        return self.node_rank() * self._devices_per_node + self.local_rank()

    def set_global_rank(self, rank: int) -> None:
        """Record this process's global rank (the strategy calls this when fulmen itself starts the processes)."""
        self._global_rank = rank

    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", 0))

    def node_rank(self) -> int:
        return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        return int(os.environ["MASTER_PORT"]) if "MASTER_PORT" in os.environ else find_free_port()

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise if `Trainer(devices, num_nodes)` contradicts what the launcher started; nothing to check here."""

    def teardown(self) -> None:
        """Undo what the environment changed in this process when the run ends (nothing here)."""


class LightningEnvironment(ClusterEnvironment):
    """Processes fulmen starts itself (or any launcher that sets LOCAL_RANK/NODE_RANK/WORLD_SIZE)."""

    @property
    def creates_processes_externally(self) -> bool:  # type: ignore[override]
        # A LOCAL_RANK in the environment means someone (fulmen's launcher, or a user) already started us.
        return "LOCAL_RANK" in os.environ

    def teardown(self) -> None:
        """Remove WORLD_SIZE from the environment, as Lightning's LightningEnvironment does after a run."""
        os.environ.pop("WORLD_SIZE", None)


class TorchElasticEnvironment(ClusterEnvironment):
    """Started by `torchrun`: RANK, LOCAL_RANK, WORLD_SIZE, GROUP_RANK and MASTER_ADDR/PORT are given."""

    creates_processes_externally = True

    def __init__(self) -> None:  # torchrun states every size and rank: nothing to configure
        super().__init__()

    def set_world_size(self, size: int) -> None:
        _launcher_decides("TorchElasticEnvironment", "world size", size, self.world_size())

    def set_global_rank(self, rank: int) -> None:
        _launcher_decides("TorchElasticEnvironment", "global rank", rank, self.global_rank())

    @staticmethod
    def detect() -> bool:
        required = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
        return "TORCHELASTIC_RUN_ID" in os.environ or all(key in os.environ for key in required)

    def global_rank(self) -> int:
        return int(os.environ["RANK"])

    def node_rank(self) -> int:
        return int(os.environ.get("GROUP_RANK", 0))

    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        world_size = self.world_size()
        if num_devices * num_nodes != world_size:
            per_node = os.environ.get("LOCAL_WORLD_SIZE")
            hint = (f"`devices={per_node}, num_nodes={world_size // int(per_node)}`"
                    if per_node and per_node.isdigit() and int(per_node) > 0 and world_size % int(per_node) == 0
                    else "`devices` x `num_nodes` equal to it")
            raise ValueError(
                f"`Trainer(devices={num_devices}, num_nodes={num_nodes})` describes {num_devices * num_nodes} "
                f"process(es), but torchrun started {world_size} (WORLD_SIZE={world_size}). Set {hint}, or start "
                "torchrun with a matching `--nnodes`/`--nproc_per_node`."
            )


class SLURMEnvironment(ClusterEnvironment):
    """Started by `srun`: ranks from SLURM_PROCID/SLURM_LOCALID/SLURM_NODEID, address from the node list.

    Args:
        auto_requeue: during fit, on `requeue_signal` save `hpc_ckpt_<n>.ckpt` in `default_root_dir` and, on
            global rank 0, run `scontrol requeue <job id>`; a requeued run (`fit(ckpt_path=None)`) resumes from
            the newest such checkpoint. Ask SLURM for the signal with `#SBATCH --signal=SIGUSR1@90`.
        requeue_signal: the signal that asks for the requeue (SIGUSR1 when None).
    """

    creates_processes_externally = True

    def __init__(self, auto_requeue: bool = True, requeue_signal: signal.Signals | None = None) -> None:
        super().__init__()  # SLURM states every size and rank: nothing else to configure
        if not isinstance(auto_requeue, bool):
            raise TypeError(f"`SLURMEnvironment(auto_requeue={auto_requeue!r})` must be True or False.")
        self.auto_requeue = auto_requeue
        if requeue_signal is None:
            requeue_signal = signal.SIGUSR1
        self.requeue_signal = signal.Signals(requeue_signal)

    @staticmethod
    def job_id() -> int | None:
        """SLURM's job id as an int; None outside a batch job (or in an interactive "bash" allocation)."""
        if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
            return None
        job_id = os.environ.get("SLURM_JOB_ID")
        try:
            return int(job_id) if job_id is not None else None
        except ValueError:
            return None

    @staticmethod
    def job_name() -> str | None:
        return os.environ.get("SLURM_JOB_NAME")

    @staticmethod
    def resolve_root_node_address(nodes: str) -> str:
        """The first host of a SLURM node list: "node[03-05,07] other" → "node03", "a,b" → "a"."""
        return first_host(nodes.split(" ")[0])

    def set_world_size(self, size: int) -> None:
        _launcher_decides("SLURMEnvironment", "world size", size, self.world_size())

    def set_global_rank(self, rank: int) -> None:
        _launcher_decides("SLURMEnvironment", "global rank", rank, self.global_rank())

    @staticmethod
    def detect() -> bool:
        # An interactive allocation (job name "bash"/"interactive") runs one process per node: not ours to use.
        return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")

    def world_size(self) -> int:
        return int(os.environ["SLURM_NTASKS"])

    def global_rank(self) -> int:
        return int(os.environ["SLURM_PROCID"])

    def local_rank(self) -> int:
        return int(os.environ["SLURM_LOCALID"])

    def node_rank(self) -> int:
        return int(os.environ["SLURM_NODEID"])

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        per_node = os.environ.get("SLURM_NTASKS_PER_NODE")
        if per_node is not None and per_node.isdigit() and int(per_node) != num_devices:
            raise ValueError(f"`Trainer(devices={num_devices})` does not match SLURM's `--ntasks-per-node={per_node}`: "
                             f"set `devices={per_node}` (one process per device).")
        nodes = os.environ.get("SLURM_NNODES")
        if nodes is not None and nodes.isdigit() and int(nodes) != num_nodes:
            raise ValueError(f"`Trainer(num_nodes={num_nodes})` does not match SLURM's `--nodes={nodes}`: "
                             f"set `num_nodes={nodes}`.")
        world_size = self.world_size()
        if num_devices * num_nodes != world_size:
            raise ValueError(
                f"`Trainer(devices={num_devices}, num_nodes={num_nodes})` describes {num_devices * num_nodes} "
                f"process(es), but SLURM started {world_size} tasks (SLURM_NTASKS={world_size}). Set `devices` to "
                "the tasks per node and `num_nodes` to the number of nodes."
            )

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" in os.environ:
            return os.environ["MASTER_ADDR"]
        nodes = os.environ.get("SLURM_NODELIST", os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1"))
        return self.resolve_root_node_address(nodes)

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        # Same on every node without communication: derived from the job id.
        return 10000 + int(os.environ.get("SLURM_JOB_ID", "0")[-4:] or 0) % 5000


def _launcher_decides(kind: str, what: str, asked: int, stated: int) -> None:
    """torchrun and SLURM state sizes and ranks themselves: a different value cannot be set (Lightning's
    environments ignore it; fulmen says so)."""
    if asked != stated:
        raise ValueError(f"{kind}: the {what} is {stated}, as the launcher started the job; it cannot be set to "
                         f"{asked}. Start the job with the sizes you want instead.")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "node[03-05,07]" → "node03"."""
    match = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not match:
        return nodelist
    prefix, _, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def detect_environment(num_nodes: int, devices_per_node: int) -> ClusterEnvironment:
    """torchrun first, then SLURM, else fulmen's own launcher."""
    for kind in (TorchElasticEnvironment, SLURMEnvironment):
        if kind.detect():
            return kind()
    return LightningEnvironment(num_nodes, devices_per_node)


def find_free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
