"""The Trainer's callback list in Lightning's order: the user's callbacks (tuner callbacks moved first), max_time's
Timer, the progress bar, the model summary, then every checkpoint callback."""

import fulmen as L
from fulmen.callbacks import EarlyStopping, LearningRateFinder, ModelCheckpoint, RichProgressBar


def names(trainer):
    return [type(callback).__name__ for callback in trainer.callbacks]


def test_defaults_follow_the_users_callbacks_in_lightnings_order(tmp_path):
    assert names(L.Trainer(default_root_dir=tmp_path, logger=False)) == [
        "TQDMProgressBar", "ModelSummary", "ModelCheckpoint"]
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False,
                        callbacks=[ModelCheckpoint(), EarlyStopping("loss"), LearningRateFinder()])
    assert names(trainer) == ["LearningRateFinder", "EarlyStopping", "TQDMProgressBar", "ModelSummary",
                              "ModelCheckpoint"]


def test_a_rich_bar_brings_the_rich_summary(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, callbacks=[RichProgressBar()])
    assert names(trainer) == ["RichProgressBar", "RichModelSummary", "ModelCheckpoint"]
