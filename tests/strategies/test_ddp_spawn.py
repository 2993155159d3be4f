"""strategy="ddp_spawn" inside the test process: 2 spawned ranks train, rank 0's results come back (note 31).

The module comes from `helpers/ddp_modules.py` so the spawned processes can import it; each rank also
writes its own report there, which is how rank 1's weights are checked.
"""


import pytest
import torch

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.trainer.state import TrainerStatus
from helpers.ddp_modules import DDPProbe, load_reports, make_loader, reference_fit, report_weights

pytestmark = pytest.mark.distributed


@pytest.fixture(autouse=True)
def _launch(spawn_env, spawn_time_limit):
    """A clean launch environment (removed again afterwards) and a time limit for every test here."""


def spawn_trainer(root, **flags):
    defaults = dict(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, default_root_dir=root,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    defaults.update(flags)
    return L.Trainer(**defaults)


def test_fit_hands_back_weights_metrics_state_and_best_model_path(tmp_path):
    model = DDPProbe(str(tmp_path), "spawn", log_sync=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    trainer = spawn_trainer(tmp_path, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(model, make_loader())

    expected = reference_fit(max_epochs=2)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)
    rank0, rank1 = load_reports(tmp_path, "spawn")
    for name, value in report_weights(rank1).items():
        assert torch.equal(value, report_weights(rank0)[name])
        assert torch.equal(value, model.state_dict()[name])

    assert trainer.global_step == 8 and trainer.current_epoch == 2
    assert trainer.state.status == TrainerStatus.FINISHED
    assert trainer.callback_metrics["loss_local"].item() == pytest.approx(rank0["callback_metrics"]["loss_local"])
    assert checkpoint.best_model_path == str(tmp_path / "checkpoints" / "epoch=1-step=8.ckpt")
    assert (tmp_path / "checkpoints" / "epoch=1-step=8.ckpt").is_file()
    # Each rank trained on its own shard, in its own process.
    assert not set(rank0["train_indices"]["0"]) & set(rank1["train_indices"]["0"])
    assert rank0["pid"] != rank1["pid"]


def test_fit_with_sync_dist_hands_back_the_synced_metric(tmp_path):
    model = DDPProbe(str(tmp_path), "spawn_sync")
    trainer = spawn_trainer(tmp_path)
    trainer.fit(model, make_loader())
    rank0, rank1 = load_reports(tmp_path, "spawn_sync")
    means = [sum(report["train_losses"]["1"]) / 4 for report in (rank0, rank1)]
    assert trainer.callback_metrics["loss_sync"].item() == pytest.approx(sum(means) / 2, rel=1e-6)
