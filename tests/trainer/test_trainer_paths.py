"""Lightning's `trainer` and `trainer.states` import paths, used as a user would."""

import fulmen as L
from tests.helpers.tiny import TinyModule, make_loader


def test_trainer_path_is_the_trainer_and_trains(tmp_path):
    from fulmen.trainer import Trainer, seed_everything

    assert Trainer is L.Trainer and seed_everything is L.seed_everything
    seed_everything(0)
    trainer = Trainer(default_root_dir=tmp_path, max_steps=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyModule(), make_loader())
    assert trainer.global_step == 2


def test_states_path_enums_and_trainer_state(tmp_path):
    from fulmen.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus

    assert [fn.value for fn in TrainerFn] == ["fit", "validate", "test", "predict"]
    assert [stage.value for stage in RunningStage] == ["train", "sanity_check", "validate", "test", "predict"]
    assert [stage for stage in RunningStage if stage.evaluating] == [
        RunningStage.SANITY_CHECKING, RunningStage.VALIDATING, RunningStage.TESTING]
    assert RunningStage.SANITY_CHECKING.dataloader_prefix == "val"
    assert RunningStage.VALIDATING.dataloader_prefix == "val"
    assert RunningStage.PREDICTING.dataloader_prefix == "predict"
    assert TrainerFn.FITTING == "fit"  # str enums compare to their values

    state = TrainerState(TrainerStatus.INTERRUPTED)  # Lightning's first field is the status
    assert state.stopped and not state.finished and state.fn is None and state.stage is None
    assert TrainerState().status == TrainerStatus.INITIALIZING and not TrainerState().stopped

    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyModule(), make_loader())
    assert isinstance(trainer.state, TrainerState)
    assert trainer.state.fn == TrainerFn.FITTING and trainer.state.status == TrainerStatus.FINISHED
    assert trainer.state.finished and trainer.state.stopped
