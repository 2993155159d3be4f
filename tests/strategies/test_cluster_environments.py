"""Where ranks come from (fulmen's own launcher, torchrun, SLURM) and how strategy names resolve, with
monkeypatched environment variables; nothing here starts a process or joins a process group.
Expected values were checked against Lightning 2.6.6's environments and Trainer."""

import pytest
import torch

import fulmen as L
from fulmen.strategies import DDPStrategy
from fulmen.strategies.cluster_environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
    detect_environment,
    first_host,
)
from fulmen.strategies.launchers import MultiprocessingLauncher, SubprocessScriptLauncher
from helpers.tiny import TinyModule, make_loader

_LAUNCH_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
                     "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
                     "SLURM_NODEID", "SLURM_NODELIST", "SLURM_JOB_NODELIST", "SLURM_JOB_NAME", "SLURM_JOB_ID",
                     "SLURM_NTASKS_PER_NODE", "SLURM_NNODES")


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch):
    for key in _LAUNCH_VARIABLES:
        monkeypatch.delenv(key, raising=False)


def _set(monkeypatch, **variables):
    for key, value in variables.items():
        monkeypatch.setenv(key, str(value))


def _trainer(**flags):
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **flags)


TORCHRUN = dict(TORCHELASTIC_RUN_ID="job", RANK=3, LOCAL_RANK=1, GROUP_RANK=1, LOCAL_WORLD_SIZE=2, WORLD_SIZE=4,
                MASTER_ADDR="10.0.0.5", MASTER_PORT=29511)
SLURM = dict(SLURM_NTASKS=4, SLURM_PROCID=2, SLURM_LOCALID=0, SLURM_NODEID=1, SLURM_NODELIST="node[03-05,07]",
             SLURM_JOB_NAME="train", SLURM_JOB_ID=123456)


# -- torchrun ---------------------------------------------------------------------------------------------


def test_torchrun_variables_select_the_torchelastic_environment(monkeypatch):
    _set(monkeypatch, **TORCHRUN)
    environment = detect_environment(num_nodes=2, devices_per_node=2)
    assert isinstance(environment, TorchElasticEnvironment)
    assert environment.creates_processes_externally
    assert environment.global_rank() == 3 and environment.local_rank() == 1 and environment.node_rank() == 1
    assert environment.world_size() == 4
    assert environment.main_address == "10.0.0.5" and environment.main_port == 29511


def test_torchrun_without_run_id_is_detected_from_the_rank_variables(monkeypatch):
    _set(monkeypatch, RANK=1, GROUP_RANK=0, LOCAL_RANK=1, LOCAL_WORLD_SIZE=2, WORLD_SIZE=2)
    assert TorchElasticEnvironment.detect()
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert not TorchElasticEnvironment.detect()


def test_trainer_under_torchrun_reads_its_ranks_and_launches_nothing(monkeypatch):
    _set(monkeypatch, **TORCHRUN)
    trainer = _trainer(devices=2, num_nodes=2, strategy="ddp")
    assert isinstance(trainer.strategy.cluster_environment, TorchElasticEnvironment)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (3, 1, 1)
    assert trainer.world_size == 4 and trainer.num_nodes == 2 and trainer.num_devices == 2
    assert not trainer.is_global_zero
    assert trainer.strategy.launcher is None


def test_torchrun_with_default_devices_reports_the_launchers_ranks(monkeypatch):
    # The launcher is the source of truth: not world size 1 and rank node_rank * devices + local_rank.
    _set(monkeypatch, **TORCHRUN)
    trainer = _trainer()
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    assert not trainer.is_global_zero and trainer.strategy.launcher is None


@pytest.mark.parametrize("flags", [{}, {"devices": 2}, {"devices": 4, "num_nodes": 2}])
def test_torchrun_world_size_must_match_devices_times_num_nodes(monkeypatch, flags):
    # Lightning 2.6.6 raises this ValueError when the run starts (its launcher validates the environment).
    _set(monkeypatch, **TORCHRUN)
    trainer = _trainer(max_epochs=1, **flags)
    with pytest.raises(ValueError, match=r"torchrun started 4 \(WORLD_SIZE=4\)\. Set `devices=2, num_nodes=2`"):
        trainer.fit(TinyModule(), make_loader())


# -- SLURM ----------------------------------------------------------------------------------------------------


def test_slurm_variables_select_the_slurm_environment(monkeypatch):
    _set(monkeypatch, **SLURM)
    environment = detect_environment(num_nodes=2, devices_per_node=2)
    assert isinstance(environment, SLURMEnvironment)
    assert environment.creates_processes_externally
    assert environment.world_size() == 4 and environment.global_rank() == 2
    assert environment.local_rank() == 0 and environment.node_rank() == 1
    assert environment.main_address == "node03"


def test_trainer_under_slurm_reads_its_ranks(monkeypatch):
    _set(monkeypatch, **SLURM)
    trainer = _trainer(devices=2, num_nodes=2, strategy="ddp")
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (2, 0, 1, 4)
    assert trainer.strategy.launcher is None


def test_slurm_with_default_devices_reports_slurms_ranks(monkeypatch):
    _set(monkeypatch, **SLURM)
    trainer = _trainer()
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (2, 0, 1, 4)


@pytest.mark.parametrize(("flags", "variables", "message"), [
    ({"devices": 1, "num_nodes": 2}, {"SLURM_NTASKS_PER_NODE": 2}, r"--ntasks-per-node=2`: set `devices=2`"),
    ({"devices": 2, "num_nodes": 1}, {"SLURM_NNODES": 2}, r"--nodes=2`: set `num_nodes=2`"),
    ({"devices": 2, "num_nodes": 1}, {}, r"SLURM started 4 tasks \(SLURM_NTASKS=4\)"),
])
def test_slurm_tasks_must_match_devices_and_num_nodes(monkeypatch, flags, variables, message):
    _set(monkeypatch, **SLURM, **variables)
    trainer = _trainer(max_epochs=1, **flags)
    with pytest.raises(ValueError, match=message):
        trainer.fit(TinyModule(), make_loader())


def test_slurm_main_port_is_the_same_on_every_rank_and_master_variables_win(monkeypatch):
    _set(monkeypatch, **SLURM)
    port = SLURMEnvironment().main_port
    _set(monkeypatch, SLURM_PROCID=3, SLURM_LOCALID=1)
    assert SLURMEnvironment().main_port == port
    assert 1024 < port < 65536
    _set(monkeypatch, MASTER_ADDR="10.1.1.1", MASTER_PORT=2222)
    environment = SLURMEnvironment()
    assert environment.main_address == "10.1.1.1" and environment.main_port == 2222


@pytest.mark.parametrize("job_name", ["bash", "interactive"])
def test_interactive_slurm_jobs_are_not_used(monkeypatch, job_name):
    _set(monkeypatch, **dict(SLURM, SLURM_JOB_NAME=job_name))
    assert not SLURMEnvironment.detect()
    assert isinstance(detect_environment(1, 1), LightningEnvironment)


@pytest.mark.parametrize(("nodelist", "host"), [
    ("node[03-05,07]", "node03"), ("gpu7", "gpu7"), ("a1,a2", "a1"), ("node[1,3]", "node1"),
    ("host-[10-12]", "host-10"), ("n[001-004],m[1-2]", "n001"),
])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_torchrun_is_preferred_over_slurm(monkeypatch):
    _set(monkeypatch, **SLURM, **TORCHRUN)
    assert isinstance(detect_environment(2, 2), TorchElasticEnvironment)


# -- fulmen's own launcher ------------------------------------------------------------------------------------


def test_lightning_environment_creates_processes_itself_unless_local_rank_is_set(monkeypatch):
    environment = LightningEnvironment(num_nodes=1, devices_per_node=2)
    assert isinstance(detect_environment(1, 2), LightningEnvironment)
    assert not environment.creates_processes_externally
    assert environment.world_size() == 2 and environment.global_rank() == 0
    _set(monkeypatch, LOCAL_RANK=1, NODE_RANK=0, WORLD_SIZE=2)
    assert environment.creates_processes_externally
    assert environment.local_rank() == 1 and environment.global_rank() == 1


def test_relaunched_rank_builds_no_launcher(monkeypatch):
    _set(monkeypatch, LOCAL_RANK=1, NODE_RANK=0, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=12345)
    trainer = _trainer(devices=2, strategy="ddp")
    assert trainer.strategy.launcher is None
    assert trainer.global_rank == 1 and trainer.local_rank == 1 and not trainer.is_global_zero


# -- strategy names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "launcher", "start_method", "find_unused"), [
    ("ddp", SubprocessScriptLauncher, None, False),
    ("ddp_spawn", MultiprocessingLauncher, "spawn", False),
    ("ddp_fork", MultiprocessingLauncher, "fork", False),
    ("ddp_notebook", MultiprocessingLauncher, "fork", False),
    ("ddp_find_unused_parameters_true", SubprocessScriptLauncher, None, True),
    ("ddp_spawn_find_unused_parameters_true", MultiprocessingLauncher, "spawn", True),
])
def test_strategy_names_resolve_without_launching(name, launcher, start_method, find_unused):
    trainer = _trainer(devices=2, strategy=name)
    strategy = trainer.strategy
    assert isinstance(strategy, DDPStrategy)
    assert type(strategy.launcher) is launcher
    if start_method is not None:
        assert strategy.launcher.start_method == start_method
    assert strategy._ddp_kwargs["find_unused_parameters"] is find_unused
    assert trainer.world_size == 2 and trainer.num_devices == 2 and trainer.global_rank == 0
    assert strategy.process_group_backend == "gloo" and strategy.root_device == torch.device("cpu")


def test_unknown_strategy_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="ddp_spawn"):
        _trainer(devices=2, strategy="dpp")


def test_ddp_strategy_instance_is_used_as_given():
    strategy = DDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
    trainer = _trainer(devices=2, strategy=strategy)
    assert trainer.strategy is strategy
    assert trainer.world_size == 2 and isinstance(strategy.launcher, SubprocessScriptLauncher)


def test_ddp_strategy_instance_gets_the_trainers_devices():
    trainer = _trainer(devices=2, strategy=DDPStrategy())
    assert trainer.strategy.num_processes == 2
    assert trainer.world_size == 2 and trainer.num_devices == 2
