"""The stage table names real things: hooks of LightningModule, Trainer flags and entry points."""

import inspect

import pytest

import fulmen as L
from fulmen.trainer.stages import STAGE_OF_FN, STAGES
from fulmen.trainer.state import RunningStage, TrainerFn


@pytest.mark.parametrize("stage", list(RunningStage))
def test_every_stage_names_existing_hooks_flags_and_entry_points(stage):
    info = STAGES[stage]
    for hook in (info.dataloader_hook, info.step_method, *info.batch_hooks, info.model_eval, info.model_train):
        assert hook is None or callable(getattr(L.LightningModule, hook, None)), hook
    assert info.limit_flag in inspect.signature(L.Trainer).parameters
    entry = inspect.signature(getattr(L.Trainer, info.entry)).parameters
    assert info.loader_argument in entry


def test_table_answers_plain_strings_and_every_entry_point_has_a_stage():
    assert STAGES["validate"] is STAGES[RunningStage.VALIDATING]
    assert STAGES["validate"].entry_point == "validate(dataloaders=...)"
    assert STAGES["train"].entry_point == "fit(train_dataloaders=...)"
    assert set(STAGE_OF_FN) == set(TrainerFn)
