"""Empty dataloaders: in one process (Lightning's warning, no batch run), and
`allow_zero_length_dataloader_with_multiple_devices` (a rank with an empty dataloader among ranks with data)."""

import json
import multiprocessing

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers.ddp_uneven import EmptyOnRankOne
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def _empty():
    return DataLoader(TensorDataset(torch.randn(0, 32), torch.zeros(0, dtype=torch.long)), batch_size=8)


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_an_empty_dataloader_warns_and_runs_no_batch(tmp_path, stage):
    module = TinyModule()
    with pytest.warns(UserWarning, match="Total length of `DataLoader` across ranks is zero"):
        result = getattr(quiet_trainer(tmp_path), stage)(module, _empty())
    assert result == (None if stage == "predict" else [])  # Lightning's results
    assert not module.calls  # no step ran (the golden hook recordings cover the hooks)


def test_fit_with_empty_validation_data_trains_and_validates_nothing(tmp_path):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match="Total length of `DataLoader` across ranks is zero"):
        trainer.fit(module, make_loader(16), _empty())
    assert module.calls["training_step"] == 2 and module.calls["validation_step"] == 0
    assert trainer.num_val_batches == [0] and trainer.global_step == 2


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
