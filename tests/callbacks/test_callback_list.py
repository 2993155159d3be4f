"""The Trainer's callback list in Lightning's order: the user's callbacks (tuner callbacks moved first), max_time's
Timer, the progress bar, the model summary, then every checkpoint callback."""

import pytest

import fulmen as L
from fulmen.callbacks import EarlyStopping, LearningRateFinder, ModelCheckpoint, RichProgressBar, TQDMProgressBar
from fulmen.utilities.exceptions import MisconfigurationException


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


def test_a_callback_logs_with_self_log_and_self_log_dict(tmp_path):
    from helpers.tiny import TinyModule, make_loader, quiet_trainer

    class Logging(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.log("batch_idx", float(batch_idx), on_step=False, on_epoch=True, reduce_fx="max")

        def on_validation_epoch_end(self, trainer, pl_module):
            self.log_dict({"a": 1.0, "b": 2.0}, prog_bar=True)

    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[Logging()])
    trainer.fit(TinyModule(), make_loader(32), make_loader(16))
    metrics = {key: value.item() for key, value in trainer.callback_metrics.items()}
    assert metrics == {"batch_idx": 3.0, "a": 1.0, "b": 2.0}
    assert trainer.progress_bar_metrics == {"a": 1.0, "b": 2.0}


def test_two_progress_bars_or_a_bar_with_the_bar_disabled_raise(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"You added multiple progress bar callbacks to the Trainer, but "
                                                         r"currently only one progress bar is supported"):
        L.Trainer(default_root_dir=tmp_path, callbacks=[TQDMProgressBar(), TQDMProgressBar()])
    with pytest.raises(MisconfigurationException, match="Trainer was configured with `enable_progress_bar=False` but "
                                                         "found `TQDMProgressBar` in callbacks list"):
        L.Trainer(default_root_dir=tmp_path, callbacks=[TQDMProgressBar()], enable_progress_bar=False)
