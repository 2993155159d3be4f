"""`allow_zero_length_dataloader_with_multiple_devices`: a rank with an empty dataloader among ranks with data."""

import json
import multiprocessing

import pytest

from helpers.ddp_uneven import EmptyOnRankOne
from helpers.tiny import quiet_trainer


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
def test_allowed_empty_rank_runs_no_batches_while_the_other_validates(tmp_path, spawn_env):
    _fit(tmp_path, allow=True)
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [report["val_batches"] for report in reports] == [4, 0]
    assert [report["num_val_batches"] for report in reports] == [[4], [0]]


@pytest.mark.distributed
def test_empty_rank_is_an_error_unless_allowed(tmp_path, spawn_env):
    with pytest.raises(Exception, match="zero length.*allow_zero_length_dataloader_with_multiple_devices"):
        _fit(tmp_path, allow=False)
