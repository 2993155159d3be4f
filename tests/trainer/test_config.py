"""TrainerConfig: every loop flag declared once, with its default only in `Trainer.__init__`'s signature."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import timedelta

import pytest

import fulmen as L
from fulmen.trainer.config import TrainerConfig
from fulmen.trainer.properties import TrainerProperties, _FromConfig


def test_config_fields_have_no_defaults_of_their_own():
    for field in dataclasses.fields(TrainerConfig):
        assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name


def test_every_config_field_is_a_trainer_flag():
    parameters = inspect.signature(L.Trainer).parameters
    for field in dataclasses.fields(TrainerConfig):
        assert field.name in parameters, field.name
        assert parameters[field.name].default is not inspect.Parameter.empty, field.name


def test_every_trainer_view_of_a_flag_reads_a_config_field():
    names = {field.name for field in dataclasses.fields(TrainerConfig)}
    views = {name for name, value in vars(TrainerProperties).items() if type(value) is _FromConfig}
    assert views and views <= names


def test_config_without_a_trainer_takes_the_trainer_defaults():
    config = TrainerConfig.from_flags(max_steps=5, limit_val_batches=2.0)
    trainer = L.Trainer(max_steps=5, limit_val_batches=2.0, logger=False, enable_checkpointing=False)
    assert config == trainer._config
    assert config.limit_val_batches == 2  # a whole-number float is read as a count of batches
    assert config.num_sanity_val_steps == 2 and config.log_every_n_steps == 50


def test_config_from_the_trainer_arguments_ignores_other_names():
    config = TrainerConfig.from_flags({"max_time": "00:01:00:00", "logger": False, "self": object()}, max_epochs=3)
    assert config.max_time == timedelta(hours=1) and config.max_epochs == 3


def test_unknown_flag_is_refused():
    with pytest.raises(TypeError, match="max_epoch"):
        TrainerConfig.from_flags(max_epoch=3)



@pytest.mark.parametrize("name", ["max_epochs", "limit_val_batches", "max_steps", "world_size"])
def test_flag_views_refuse_assignment_instead_of_ignoring_it(name):
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False)
    before = getattr(trainer, name)
    with pytest.raises(AttributeError, match=f"trainer.{name}` is read-only"):
        setattr(trainer, name, 7)
    assert getattr(trainer, name) == before


@pytest.mark.parametrize(("flags", "line"), [
    (dict(limit_train_batches=1), "`Trainer(limit_train_batches=1)` was configured so 1 batch per epoch will be used."),
    (dict(limit_val_batches=1.0), "`Trainer(limit_val_batches=1.0)` was configured so 100% of the batches will be used."),
    (dict(val_check_interval=1), "`Trainer(val_check_interval=1)` was configured so validation will run after every "
                                 "batch."),
    (dict(val_check_interval=1.0), "`Trainer(val_check_interval=1.0)` was configured so validation will run at the "
                                   "end of the training epoch."),
    (dict(overfit_batches=1), "`Trainer(overfit_batches=1)` was configured so 1 batch will be used."),
])
def test_a_limit_of_exactly_one_is_explained_as_lightning_does(tmp_path, caplog, flags, line):
    L.Trainer(default_root_dir=tmp_path, logger=False, **flags)
    assert line in caplog.text


def test_no_limit_line_for_flags_fast_dev_run_or_overfit_batches_replace(tmp_path, caplog):
    L.Trainer(default_root_dir=tmp_path, logger=False, fast_dev_run=True, limit_test_batches=1)
    L.Trainer(default_root_dir=tmp_path, logger=False, overfit_batches=2, limit_train_batches=1)
    L.Trainer(default_root_dir=tmp_path, logger=False, limit_train_batches=2, limit_val_batches=None)
    assert "was configured so" not in caplog.text
