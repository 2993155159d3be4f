"""TQDMProgressBar: what a fit, validate and predict print to stdout, refresh_rate, and how the Trainer picks
the bar."""

import pytest
import torch

from fulmen.callbacks import ProgressBar, TQDMProgressBar
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.module_fixtures import LinearModule, LinearModuleWithValidation, quiet_trainer, vector_loader


class _LogsHidden(LinearModuleWithValidation):
    def training_step(self, batch, batch_idx):
        self.log("not_on_bar", 1.0)
        return super().training_step(batch, batch_idx)


def _bar_trainer(tmp_path, **kwargs):
    options = dict(enable_progress_bar=True, limit_train_batches=4)
    options.update(kwargs)
    return quiet_trainer(tmp_path, **options)


def test_fit_prints_epoch_and_prog_bar_metrics(tmp_path, capsys):
    _bar_trainer(tmp_path, limit_val_batches=0).fit(_LogsHidden(), vector_loader())
    out = capsys.readouterr().out
    assert "Epoch 0" in out
    assert "4/4" in out
    assert "loss=" in out
    assert "not_on_bar" not in out


def test_validation_inside_fit_shows_its_bar_and_metric(tmp_path, capsys):
    class Shown(LinearModuleWithValidation):
        def validation_step(self, batch, batch_idx):
            self.log("val_shown", self(batch).sum(), prog_bar=True)

    _bar_trainer(tmp_path, limit_val_batches=2).fit(Shown(), vector_loader(), vector_loader())
    out = capsys.readouterr().out
    assert "Validation DataLoader 0" in out
    assert "val_shown=" in out


def test_sanity_check_has_its_own_description(tmp_path, capsys):
    _bar_trainer(tmp_path, num_sanity_val_steps=1, limit_val_batches=1).fit(
        LinearModuleWithValidation(), vector_loader(), vector_loader())
    assert "Sanity Checking DataLoader 0" in capsys.readouterr().out


def test_validate_shows_a_validation_bar(tmp_path, capsys):
    _bar_trainer(tmp_path).validate(LinearModuleWithValidation(), vector_loader(), verbose=False)
    out = capsys.readouterr().out
    assert "Validation DataLoader 0" in out
    assert "4/4" in out
    assert "Epoch" not in out


def test_test_and_predict_bars(tmp_path, capsys):
    class Testing(LinearModule):
        def test_step(self, batch, batch_idx):
            self.log("t", self(batch).sum())

    trainer = _bar_trainer(tmp_path)
    trainer.test(Testing(), vector_loader(), verbose=False)
    assert "Testing DataLoader 0" in capsys.readouterr().out
    trainer.predict(Testing(), vector_loader())
    assert "Predicting DataLoader 0" in capsys.readouterr().out


def test_two_epochs_show_both_epoch_numbers(tmp_path, capsys):
    _bar_trainer(tmp_path, max_epochs=2, limit_train_batches=2).fit(LinearModule(), vector_loader())
    out = capsys.readouterr().out
    assert "Epoch 0" in out and "Epoch 1" in out


def test_refresh_rate_zero_disables_the_bar(tmp_path, capsys):
    bar = TQDMProgressBar(refresh_rate=0)
    trainer = _bar_trainer(tmp_path, callbacks=[bar])
    trainer.fit(LinearModuleWithValidation(), vector_loader(), vector_loader())
    trainer.validate(LinearModuleWithValidation(), vector_loader(), verbose=False)
    assert capsys.readouterr().out == ""
    assert trainer.progress_bar_callback is bar
    assert not bar.is_enabled


def test_explicit_bar_is_used_instead_of_the_default(tmp_path, capsys):
    bar = TQDMProgressBar(refresh_rate=5)
    trainer = _bar_trainer(tmp_path, callbacks=[bar])
    assert bar.refresh_rate == 5
    assert [cb for cb in trainer.callbacks if isinstance(cb, ProgressBar)] == [bar]
    assert trainer.progress_bar_callback is bar
    trainer.fit(LinearModule(), vector_loader())
    out = capsys.readouterr().out
    assert "Epoch 0" in out and "4/4" in out


def test_default_trainer_adds_one_tqdm_bar(tmp_path):
    trainer = _bar_trainer(tmp_path)
    bars = [cb for cb in trainer.callbacks if isinstance(cb, ProgressBar)]
    assert len(bars) == 1 and type(bars[0]) is TQDMProgressBar
    assert trainer.progress_bar_callback is bars[0]


def test_enable_progress_bar_false_has_no_bar_and_prints_nothing(tmp_path, capsys):
    trainer = quiet_trainer(tmp_path, enable_progress_bar=False)
    assert trainer.progress_bar_callback is None
    trainer.fit(LinearModule(), vector_loader())
    assert "Epoch 0" not in capsys.readouterr().out


def test_enable_progress_bar_false_with_an_explicit_bar_raises(tmp_path):
    with pytest.raises(MisconfigurationException, match="enable_progress_bar=False"):
        quiet_trainer(tmp_path, enable_progress_bar=False, callbacks=[TQDMProgressBar()])


def test_disable_and_enable(tmp_path, capsys):
    bar = TQDMProgressBar()
    bar.disable()
    assert not bar.is_enabled
    _bar_trainer(tmp_path, callbacks=[bar]).fit(LinearModule(), vector_loader())
    assert "Epoch 0" not in capsys.readouterr().out
    bar.enable()
    assert bar.is_enabled


def test_get_metrics_holds_the_prog_bar_values(tmp_path):
    captured = {}

    class Reading(TQDMProgressBar):
        def on_train_epoch_end(self, trainer, pl_module):
            captured.update(self.get_metrics(trainer, pl_module))
            super().on_train_epoch_end(trainer, pl_module)

    trainer = _bar_trainer(tmp_path, callbacks=[Reading()], limit_val_batches=0)
    trainer.fit(_LogsHidden(), vector_loader())
    assert "loss" in captured and "not_on_bar" not in captured
    assert captured["loss"] == pytest.approx(trainer.progress_bar_metrics["loss"])
    assert isinstance(trainer.progress_bar_metrics["loss"], float)


def test_get_metrics_includes_the_logger_version(tmp_path):
    from fulmen.loggers import CSVLogger

    captured = {}

    class Reading(TQDMProgressBar):
        def on_train_end(self, trainer, pl_module):
            captured.update(self.get_metrics(trainer, pl_module))
            super().on_train_end(trainer, pl_module)

    trainer = _bar_trainer(tmp_path, callbacks=[Reading()], logger=CSVLogger(tmp_path))
    trainer.fit(LinearModule(), vector_loader())
    assert captured["v_num"] == 0
    assert torch.isfinite(torch.tensor(captured["loss"]))


def test_small_metrics_show_three_decimals(tmp_path, capsys):
    class Constant(LinearModule):
        def training_step(self, batch, batch_idx):
            self.log("small", 0.123456, prog_bar=True)
            self.log("count", 7, prog_bar=True)
            return self(batch).sum()

    _bar_trainer(tmp_path, limit_train_batches=2).fit(Constant(), vector_loader())
    out = capsys.readouterr().out
    assert "small=0.123" in out and "count=7.000" in out


def test_large_metric_uses_tqdm_number_format(tmp_path, capsys):
    class Constant(LinearModule):
        def training_step(self, batch, batch_idx):
            self.log("big", 1234.5678, prog_bar=True)
            return self(batch).sum()

    _bar_trainer(tmp_path, limit_train_batches=2).fit(Constant(), vector_loader())
    assert "big=1.23e+3" in capsys.readouterr().out
