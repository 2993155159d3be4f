"""ProgressBar/TQDMProgressBar customisation as Lightning 2.6.6 has it: the members a subclass reads (trainer,
descriptions, batch totals, dataloader tracking) and the methods it overrides (init_*_tqdm, get_metrics,
BAR_FORMAT), seen in what is printed. Strings checked against lightning.pytorch 2.6.6 in a scratch venv."""

import copy
import pickle

import pytest
from torch.utils.data import DataLoader

from fulmen.callbacks import ProgressBar, TQDMProgressBar
from fulmen.callbacks.progress.tqdm_progress import Tqdm
from fulmen.loggers import CSVLogger
from helpers.module_fixtures import LinearModule, LinearModuleWithValidation, quiet_trainer, vector_loader


def _fit(tmp_path, bar, module=None, val=None, **kwargs):
    options = dict(enable_progress_bar=True, limit_train_batches=4, callbacks=[bar])
    options.update(kwargs)
    trainer = quiet_trainer(tmp_path, **options)
    trainer.fit(module or LinearModule(), vector_loader(), val)
    return trainer


def test_bars_and_trainer_before_they_exist_raise_lightnings_error():
    class Mine(TQDMProgressBar):
        pass

    bar = Mine()
    for name in ("train_progress_bar", "val_progress_bar", "test_progress_bar", "predict_progress_bar", "trainer"):
        with pytest.raises(TypeError, match=rf"The `Mine._{name}` reference has not been set yet."):
            getattr(bar, name)


def test_descriptions_format_and_flags():
    bar = TQDMProgressBar(process_position=1)
    assert (bar.train_description, bar.validation_description, bar.test_description, bar.predict_description,
            bar.sanity_check_description) == ("Training", "Validation", "Testing", "Predicting", "Sanity Checking")
    assert bar.BAR_FORMAT == "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
    assert bar.process_position == 1 and bar.is_enabled and not bar.is_disabled
    bar.disable()
    assert bar.is_disabled and not bar.is_enabled
    assert TQDMProgressBar(refresh_rate=0).is_disabled


def test_bar_setters_take_any_bar():
    bar = TQDMProgressBar()
    made = Tqdm(disable=True)
    bar.train_progress_bar = made
    bar.val_progress_bar = made
    assert bar.train_progress_bar is made and bar.val_progress_bar is made


def test_tqdm_pads_numbers_like_lightning():
    assert [Tqdm.format_num(n) for n in (0.5, 7.0, 3, "1", "abc", 1234.5678)] == [
        "0.500", "7.000", "3", "1.000", "abc", "1.23e+3"]


def test_overridden_init_train_tqdm_and_bar_format_are_used(tmp_path, capsys):
    class Custom(TQDMProgressBar):
        BAR_FORMAT = "{desc} <<{n_fmt} of {total_fmt}>>{postfix}"

        def init_train_tqdm(self):
            bar = super().init_train_tqdm()
            bar.set_postfix_str("mine")
            return bar

    _fit(tmp_path, Custom())
    out = capsys.readouterr().out
    assert "Training <<0 of ?>>, mine" in out
    assert "Epoch 0:  <<4 of 4>>" in out  # tqdm's {desc} ends in ": "


def test_overridden_descriptions_are_used(tmp_path, capsys):
    class Renamed(TQDMProgressBar):
        @property
        def validation_description(self):
            return "Checking"

        @property
        def sanity_check_description(self):
            return "Warming"

    _fit(tmp_path, Renamed(), LinearModuleWithValidation(), vector_loader(), limit_val_batches=2,
         num_sanity_val_steps=1)
    out = capsys.readouterr().out
    assert "Checking DataLoader 0" in out and "Warming DataLoader 0" in out
    assert "Validation DataLoader" not in out


def test_overridden_get_metrics_is_what_the_bar_shows(tmp_path, capsys):
    class Trimmed(TQDMProgressBar):
        def get_metrics(self, trainer, pl_module):
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            items["custom"] = "yes"
            return items

    _fit(tmp_path, Trimmed(), logger=CSVLogger(tmp_path))
    out = capsys.readouterr().out
    assert "loss=" in out and "custom=yes" in out
    assert "v_num" not in out


def test_overridden_init_validation_and_test_and_predict_bars(tmp_path, capsys):
    made = []

    class Recording(TQDMProgressBar):
        def init_validation_tqdm(self):
            made.append(("validation", self.trainer.state.fn))
            return super().init_validation_tqdm()

        def init_test_tqdm(self):
            made.append("test")
            return super().init_test_tqdm()

        def init_predict_tqdm(self):
            made.append("predict")
            return super().init_predict_tqdm()

        def init_sanity_tqdm(self):
            made.append("sanity")
            return super().init_sanity_tqdm()

    class Both(LinearModuleWithValidation):
        def test_step(self, batch, batch_idx):
            self.log("t", self(batch).sum())

    bar = Recording()
    trainer = _fit(tmp_path, bar, Both(), vector_loader(), limit_val_batches=2, num_sanity_val_steps=1)
    trainer.validate(Both(), vector_loader(), verbose=False)
    trainer.test(Both(), vector_loader(), verbose=False)
    trainer.predict(Both(), vector_loader())
    assert made == ["sanity", ("validation", "fit"), ("validation", "validate"), "test", "predict"]
    out = capsys.readouterr().out
    for text in ("Sanity Checking DataLoader 0", "Validation DataLoader 0", "Testing DataLoader 0",
                 "Predicting DataLoader 0"):
        assert text in out


def test_leave_keeps_each_epochs_line(tmp_path, capsys):
    _fit(tmp_path, TQDMProgressBar(leave=True), max_epochs=2)
    lines = [line for line in capsys.readouterr().out.replace("\r", "\n").splitlines() if "4/4" in line]
    assert any(line.startswith("Epoch 0") for line in lines) and any(line.startswith("Epoch 1") for line in lines)


def test_print_goes_above_the_bar(tmp_path, capsys):
    class Printing(LinearModule):
        def training_step(self, batch, batch_idx):
            self.print("hello from step", batch_idx)
            return super().training_step(batch, batch_idx)

    _fit(tmp_path, TQDMProgressBar(), Printing())
    assert "hello from step 0\n" in capsys.readouterr().out


def test_totals_and_trainer_during_fit(tmp_path):
    seen = []

    class Reading(TQDMProgressBar):
        def on_train_epoch_start(self, trainer, pl_module):
            super().on_train_epoch_start(trainer, pl_module)
            seen.append(("train", self.trainer is trainer, self.total_train_batches, self.total_val_batches,
                         self.train_progress_bar.total))

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
            if batch_idx == 0:
                seen.append(("val", dataloader_idx, self.total_val_batches_current_dataloader,
                             self.val_progress_bar.desc))

    class TwoVal(LinearModuleWithValidation):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("v", self(batch).sum())

    vals = [DataLoader(vector_loader().dataset, batch_size=16), DataLoader(vector_loader(48).dataset, batch_size=8)]
    _fit(tmp_path, Reading(), TwoVal(), vals, max_epochs=2, check_val_every_n_epoch=2)
    # The first epoch does not validate, so the validation data is requested at the first validation and the
    # bar counts no validation batches before it (Lightning 2.6.6 shows the same totals).
    assert seen == [("train", True, 4, 0, 4), ("train", True, 4, 0, 4),
                    ("val", 0, 4, "Validation DataLoader 0: "), ("val", 1, 6, "Validation DataLoader 1: ")]


def test_total_train_batches_counts_the_steps_left_without_max_epochs(tmp_path, capsys):
    totals = []

    class Reading(TQDMProgressBar):
        def on_train_epoch_start(self, trainer, pl_module):
            super().on_train_epoch_start(trainer, pl_module)
            totals.append(self.total_train_batches)

    _fit(tmp_path, Reading(), max_epochs=-1, max_steps=5)
    assert totals == [4, 1]
    assert "Epoch 1: 100%" in capsys.readouterr().out.replace("\r", "\n")


def test_dataloader_tracker():
    bar = TQDMProgressBar()
    assert [bar.has_dataloader_changed(0), bar.has_dataloader_changed(0), bar.has_dataloader_changed(1)] == [
        True, False, True]
    bar.reset_dataloader_idx_tracker()
    assert bar.has_dataloader_changed(1)


def test_v_num_is_the_last_four_characters_of_a_string_version(tmp_path):
    captured = {}

    class Reading(TQDMProgressBar):
        def on_train_end(self, trainer, pl_module):
            captured.update(self.get_metrics(trainer, pl_module))
            super().on_train_end(trainer, pl_module)

    _fit(tmp_path, Reading(), logger=CSVLogger(tmp_path, version="version_abcdef"))
    assert captured["v_num"] == "cdef"


def test_logging_v_num_warns_that_it_overwrites_the_version(tmp_path, capsys):
    class LogsVNum(LinearModule):
        def training_step(self, batch, batch_idx):
            self.log("v_num", 1.0, prog_bar=True)
            return super().training_step(batch, batch_idx)

    with pytest.warns(UserWarning, match=r"already tracks a metric with the name\(s\) 'v_num'"):
        _fit(tmp_path, TQDMProgressBar(), LogsVNum(), logger=CSVLogger(tmp_path))
    assert "v_num=1.000" in capsys.readouterr().out


def test_bar_copies_and_pickles_without_its_tqdm_bars(tmp_path):
    bar = TQDMProgressBar()
    _fit(tmp_path, bar)
    assert bar._train_progress_bar is not None
    for clone in (copy.deepcopy(bar), pickle.loads(pickle.dumps(bar))):
        with pytest.raises(TypeError, match="has not been set yet"):
            clone.train_progress_bar
        assert clone.refresh_rate == 1


def test_a_progress_bar_subclass_like_lightnings_docs_example(tmp_path, capsys):
    class LitProgressBar(ProgressBar):
        def __init__(self):
            super().__init__()
            self.enabled = True

        def disable(self):
            self.enabled = False

        def enable(self):
            self.enabled = True

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            print(f"{(batch_idx + 1) / self.total_train_batches * 100:.01f} percent complete")

    bar = LitProgressBar()
    trainer = _fit(tmp_path, bar)
    assert trainer.progress_bar_callback is bar
    assert "100.0 percent complete" in capsys.readouterr().out
    with pytest.raises(NotImplementedError, match="must implement `disable"):
        ProgressBar().disable()
    with pytest.raises(NotImplementedError, match="must implement `enable"):
        ProgressBar().enable()
