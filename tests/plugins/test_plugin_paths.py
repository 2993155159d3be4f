"""Lightning's `plugins`, `plugins.precision`, `plugins.io` and `plugins.environments` paths, used as a user would:
built by the user and handed to `Trainer(plugins=[...])`."""

import pytest
import torch

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from tests.helpers.tiny import TinyModule, make_loader


def _trainer(tmp_path, **flags):
    flags.setdefault("max_steps", 2)
    return L.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **flags)


class DtypeSeen(TinyModule):
    def training_step(self, batch, batch_idx):
        self.seen = (self.layer.weight.dtype, self.layer(batch[0].to(self.layer.weight.dtype)).dtype)
        return super().training_step(batch, batch_idx)


def test_package_names_are_the_submodule_names():
    import fulmen.plugins as plugins
    from fulmen.plugins import io, precision

    assert plugins.Precision is precision.Precision and plugins.MixedPrecision is precision.MixedPrecision
    assert plugins.HalfPrecision is precision.HalfPrecision and plugins.DoublePrecision is precision.DoublePrecision
    assert plugins.CheckpointIO is io.CheckpointIO and plugins.TorchCheckpointIO is io.TorchCheckpointIO


@pytest.mark.parametrize(("make", "name", "weight_dtype", "output_dtype"), [
    (lambda p: p.Precision(), "32-true", torch.float32, torch.float32),
    (lambda p: p.DoublePrecision(), "64-true", torch.float64, torch.float64),
    (lambda p: p.HalfPrecision("bf16-true"), "bf16-true", torch.bfloat16, torch.bfloat16),
    (lambda p: p.MixedPrecision("bf16-mixed", "cpu"), "bf16-mixed", torch.float32, torch.bfloat16),
])
def test_precision_plugins_drive_training(tmp_path, make, name, weight_dtype, output_dtype):
    from fulmen.plugins import precision

    plugin = make(precision)
    assert plugin.precision == name
    trainer = _trainer(tmp_path, plugins=[plugin])
    module = DtypeSeen()
    trainer.fit(module, make_loader())
    assert trainer.precision == name and trainer.precision_plugin is plugin and trainer.global_step == 2
    assert module.seen == (weight_dtype, output_dtype)


def test_precision_constructors_follow_lightnings_arguments():
    from fulmen.plugins.precision import HalfPrecision, MixedPrecision

    assert HalfPrecision().precision == "16-true"
    mixed = MixedPrecision("16-mixed", "cpu")
    assert mixed.device == "cpu" and isinstance(mixed.scaler, torch.amp.GradScaler)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    assert MixedPrecision(precision="16-mixed", device="cpu", scaler=scaler).scaler is scaler
    assert MixedPrecision("bf16-mixed", "cpu").scaler is None
    with pytest.raises(MisconfigurationException, match="does not use a scaler"):
        MixedPrecision("bf16-mixed", "cpu", scaler=scaler)
    with pytest.raises(ValueError, match="'16-mixed' or 'bf16-mixed'"):
        MixedPrecision("32-true", "cpu")
    with pytest.raises(ValueError, match="'16-true' or 'bf16-true'"):
        HalfPrecision("16-mixed")


def test_torch_checkpoint_io_is_the_default_and_torn_down_after_each_run(tmp_path):
    from fulmen.plugins.io import CheckpointIO, TorchCheckpointIO

    assert isinstance(_trainer(tmp_path).strategy.checkpoint_io, TorchCheckpointIO)

    class CountingIO(TorchCheckpointIO):
        teardowns = 0

        def teardown(self):
            self.teardowns += 1

    io = CountingIO()
    trainer = _trainer(tmp_path, plugins=[io])
    module = TinyModule()
    trainer.fit(module, make_loader())
    trainer.validate(module, make_loader(16))
    assert io.teardowns == 2 and isinstance(io, CheckpointIO)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert io.load_checkpoint(tmp_path / "model.ckpt")["global_step"] == 2


class FixedRanks:
    """An environment whose launcher started 4 processes; this is global rank 2 (node 1, local rank 0)."""

    creates_processes_externally = True

    def world_size(self):
        return 4

    def global_rank(self):
        return 2

    def local_rank(self):
        return 0

    def node_rank(self):
        return 1


@pytest.fixture
def no_launcher_env(monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "GROUP_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID",
                "SLURM_NTASKS", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)


def test_cluster_environment_plugin_gives_the_strategy_its_ranks(tmp_path, no_launcher_env):
    from fulmen.plugins.environments import ClusterEnvironment

    environment = type("Fixed", (FixedRanks, ClusterEnvironment), {})()
    trainer = _trainer(tmp_path, devices=2, num_nodes=2, plugins=[environment])
    assert trainer.strategy.cluster_environment is environment
    assert trainer.strategy.launcher is None  # the environment started the processes
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 2, 0, 1)
    assert not trainer.is_global_zero


def test_environment_plugin_replaces_detection_for_a_given_strategy(tmp_path, no_launcher_env, monkeypatch):
    from fulmen.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment
    from fulmen.strategies import DDPStrategy

    # SLURM would be detected without the plugin.
    for key, value in {"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
                       "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    environment = LightningEnvironment()
    trainer = _trainer(tmp_path, devices=2, strategy=DDPStrategy(), plugins=[environment])
    assert trainer.strategy.cluster_environment is environment and trainer.world_size == 2
    assert trainer.global_rank == 0  # fulmen's own launcher: this is the launching process
    detected = _trainer(tmp_path, devices=2, strategy="ddp")
    assert isinstance(detected.strategy.cluster_environment, SLURMEnvironment) and detected.global_rank == 1

    with pytest.raises(MisconfigurationException, match="pass only one"):
        _trainer(tmp_path, plugins=[LightningEnvironment(), TorchElasticEnvironment()])


def test_torchelastic_environment_plugin_reads_torchrun_ranks(tmp_path, no_launcher_env, monkeypatch):
    from fulmen.plugins.environments import TorchElasticEnvironment

    for key, value in {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "GROUP_RANK": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    trainer = _trainer(tmp_path, devices=2, num_nodes=2, plugins=[TorchElasticEnvironment()])
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)


def test_lightning_environment_reports_the_ranks_the_strategy_uses(tmp_path, no_launcher_env, monkeypatch):
    from fulmen.plugins.environments import LightningEnvironment

    environment = LightningEnvironment()
    trainer = _trainer(tmp_path, devices=3, strategy="ddp", plugins=[environment])
    assert (environment.world_size(), environment.global_rank()) == (3, 0) == (trainer.world_size,
                                                                                trainer.global_rank)
    monkeypatch.setenv("LOCAL_RANK", "2")  # a process fulmen's launcher started
    environment = LightningEnvironment()
    trainer = _trainer(tmp_path, devices=3, strategy="ddp", plugins=[environment])
    assert environment.global_rank() == 2 == trainer.global_rank and environment.world_size() == 3

    environment.set_world_size(8)
    environment.set_global_rank(5)
    assert environment.world_size() == 8 and environment.global_rank() == 5


def test_launcher_environments_refuse_other_ranks(no_launcher_env, monkeypatch):
    from fulmen.plugins.environments import TorchElasticEnvironment

    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "GROUP_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    environment = TorchElasticEnvironment()
    environment.set_world_size(2)  # what torchrun said: fine
    with pytest.raises(ValueError, match="world size is 2"):
        environment.set_world_size(4)
    with pytest.raises(ValueError, match="global rank is 1"):
        environment.set_global_rank(0)
