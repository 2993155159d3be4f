"""`Trainer(on_nonfinite=...)` with 2 gloo processes where only rank 1's loss turns NaN: both ranks decide alike.

Rank 1's loss value is NaN but its gradients stay finite, so after DDP's gradient all-reduce only rank 1 sees
anything wrong: were the decision local, rank 0 would step and rank 1 not, and the replicas would drift apart."""

import pytest
import torch

import fulmen as L
from helpers.ddp_modules import make_loader
from helpers.nonfinite_modules import NaNAt, load_rank_reports

pytestmark = pytest.mark.distributed


@pytest.fixture(autouse=True)
def _launch(spawn_env, spawn_time_limit):
    """A clean launch environment (removed again afterwards) and a time limit for every test here."""


def _spawn_fit(tmp_path, mode):
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, default_root_dir=tmp_path,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, on_nonfinite=mode)
    trainer.fit(NaNAt(steps={2}, ranks={1}, value_only=True, out_dir=str(tmp_path)), make_loader())
    return load_rank_reports(tmp_path)


def test_skip_is_decided_on_every_rank_when_one_rank_is_non_finite(tmp_path):
    rank0, rank1 = _spawn_fit(tmp_path, "skip")
    assert rank0["skipped"] == rank1["skipped"] == 1
    assert rank0["global_step"] == rank1["global_step"] == 8
    assert rank0["finite"] and rank0["weight"] == rank1["weight"]  # the replicas stayed identical
    assert "on rank 1" in rank0["reports"][0] and "(this is rank 0)" in rank0["reports"][0]
    assert "Non-finite loss (nan) at" in rank1["reports"][0] and "batch 2 (global step 2)" in rank1["reports"][0]


def test_stop_is_decided_on_every_rank_and_saves_one_checkpoint(tmp_path):
    rank0, rank1 = _spawn_fit(tmp_path, "stop")
    path = str(tmp_path / "checkpoints" / "nonfinite-epoch=0-step=2.ckpt")
    assert rank0["checkpoint"] == rank1["checkpoint"] == path
    assert rank0["should_stop"] and rank1["should_stop"]
    assert rank0["global_step"] == rank1["global_step"] == 3 and rank0["weight"] == rank1["weight"]
    assert torch.load(path, weights_only=False)["global_step"] == 2
