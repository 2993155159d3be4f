"""`allow_zero_length_dataloader_with_multiple_devices`: a rank with an empty dataloader among ranks with data."""

import json
import multiprocessing

import pytest

from helpers.ddp_modules import free_port
from helpers.ddp_uneven import EmptyOnRankOne
from helpers.tiny import quiet_trainer


@pytest.fixture
def two_process_env(monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _fit(tmp_path, allow):
    trainer = quiet_trainer(tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1,
                            use_distributed_sampler=False, num_sanity_val_steps=0)
    try:
        trainer.fit(EmptyOnRankOne(str(tmp_path), allow))
    finally:
        for child in multiprocessing.active_children():
            child.kill()
            child.join()


@pytest.mark.distributed
def test_allowed_empty_rank_runs_no_batches_while_the_other_validates(tmp_path, two_process_env):
    _fit(tmp_path, allow=True)
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [report["val_batches"] for report in reports] == [4, 0]
    assert [report["num_val_batches"] for report in reports] == [[4], [0]]


@pytest.mark.distributed
def test_empty_rank_is_an_error_unless_allowed(tmp_path, two_process_env):
    with pytest.raises(Exception, match="zero length.*allow_zero_length_dataloader_with_multiple_devices"):
        _fit(tmp_path, allow=False)
