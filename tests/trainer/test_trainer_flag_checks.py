"""Flag combinations Lightning 2.6.6 refuses or warns about, `trainer.max_epochs` after fit, and duck-typed loggers.

Observed with Lightning 2.6.6: `enable_checkpointing=False` with a ModelCheckpoint and a float `val_check_interval`
with `check_val_every_n_epoch=None` raise MisconfigurationException at construction; an unset `max_epochs` (and no
`max_steps`/`max_time`) warns PossibleUserWarning when fit starts and reads 1000 afterwards, else -1; a `Mock()`
logger is accepted (a `MagicMock` iterates as an empty list of loggers).
"""

import warnings
from unittest import mock

import pytest

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.warnings import PossibleUserWarning
from helpers.tiny import TinyModule, make_loader, quiet_trainer


def test_possible_user_warning_is_a_user_warning():
    assert issubclass(PossibleUserWarning, UserWarning)


def test_checkpointing_disabled_with_a_model_checkpoint_callback_is_refused(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"enable_checkpointing=False.*ModelCheckpoint"):
        L.Trainer(default_root_dir=tmp_path, enable_checkpointing=False, callbacks=[ModelCheckpoint()])


def test_fast_dev_run_with_a_model_checkpoint_callback_is_accepted(tmp_path):
    L.Trainer(default_root_dir=tmp_path, fast_dev_run=True, callbacks=[ModelCheckpoint()])


@pytest.mark.parametrize("interval", [0.5, 1.0])
def test_float_val_check_interval_without_epoch_cadence_is_refused(tmp_path, interval):
    with pytest.raises(MisconfigurationException, match=rf"`val_check_interval` should be an integer or a time-based "
                                                         rf"duration .* when `check_val_every_n_epoch=None`: {interval} is"):
        L.Trainer(default_root_dir=tmp_path, val_check_interval=interval, check_val_every_n_epoch=None)


def test_int_val_check_interval_without_epoch_cadence_is_accepted(tmp_path):
    L.Trainer(default_root_dir=tmp_path, val_check_interval=3, check_val_every_n_epoch=None)
    L.Trainer(default_root_dir=tmp_path, check_val_every_n_epoch=None)  # the default interval is not "given"


def test_unset_max_epochs_warns_possible_user_warning_at_fit_and_reads_1000(tmp_path, monkeypatch):
    trainer = quiet_trainer(tmp_path, limit_train_batches=1)
    assert trainer.max_epochs is None
    stop = L.Callback()
    stop.on_train_start = lambda trainer, module: setattr(trainer, "should_stop", True)
    trainer.callbacks.append(stop)
    with pytest.warns(PossibleUserWarning, match=r"`max_epochs` was not set.*1000.*max_epochs=-1"):
        trainer.fit(TinyModule(), make_loader(16))
    assert trainer.max_epochs == 1000
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*max_epochs", category=PossibleUserWarning)
        trainer.fit(TinyModule(), make_loader(16))  # set for good: no second warning


@pytest.mark.parametrize("flags", [{"max_steps": 3}, {"max_steps": 3, "max_time": {"seconds": 60}}])
def test_max_epochs_reads_minus_one_after_a_step_limited_fit(tmp_path, flags):
    trainer = quiet_trainer(tmp_path, limit_train_batches=2, **flags)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*max_epochs", category=PossibleUserWarning)
        trainer.fit(TinyModule(), make_loader(16))
    assert (trainer.max_epochs, trainer.current_epoch, trainer.global_step) == (-1, 2, 3)


def test_mock_logger_is_accepted_and_called(tmp_path):
    logger = mock.Mock()
    trainer = quiet_trainer(tmp_path, logger=logger, max_steps=1)
    assert trainer.logger is logger and trainer.loggers == [logger]
    trainer.fit(TinyModule(), make_loader(16))
    called = {call[0] for call in logger.method_calls}
    assert {"log_graph", "save", "finalize"} <= called


def test_magic_mock_logger_iterates_as_no_loggers(tmp_path):
    assert quiet_trainer(tmp_path, logger=mock.MagicMock()).loggers == []
