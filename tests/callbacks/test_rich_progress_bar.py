"""RichProgressBar and RichModelSummary: what they draw (recorded through rich's console into a StringIO, no
terminal needed), that rich is optional and loaded lazily, and Lightning 2.6.6's strings (checked in a scratch
venv: "Epoch 1/1 " padded to the width of "Validation", `name: value` metrics with ".3f", "v_num: 0.000")."""

import subprocess
import sys

import pytest
import rich

from fulmen.callbacks import ModelSummary, RichModelSummary, RichProgressBar
from fulmen.callbacks.progress import RichProgressBar as RichProgressBarFromProgress
from fulmen.callbacks.progress.rich_progress import RichProgressBarTheme
from fulmen.loggers import CSVLogger
from helpers.module_fixtures import quiet_trainer
from helpers.progress_probes import LoggingModule, Nested, rich_console, rich_fit, rich_summary_text
from helpers.tiny import TinyModule, make_loader


@pytest.fixture(autouse=True)
def _default_rich_console():
    yield
    rich.reconfigure()


def test_importing_fulmen_does_not_import_rich():
    code = ("import sys, fulmen, fulmen.callbacks, fulmen.callbacks.progress; "
            "from fulmen.callbacks import RichProgressBar, RichModelSummary; print('rich' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_without_rich_construction_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)  # find_spec then reports rich as absent
    with pytest.raises(ModuleNotFoundError, match=r"`RichProgressBar` requires `rich` >= 10.2.2.*pip install -U rich"):
        RichProgressBar()
    with pytest.raises(ModuleNotFoundError, match=r"`RichModelSummary` requires `rich`.*pip install -U rich"):
        RichModelSummary()


def test_defaults_match_lightning():
    bar = RichProgressBar()
    assert RichProgressBarFromProgress is RichProgressBar
    assert bar.refresh_rate == 100 and bar.is_enabled and not bar.is_disabled
    assert bar.theme == RichProgressBarTheme()
    assert repr(RichProgressBarTheme()) == (
        "RichProgressBarTheme(description='', progress_bar='#6206E0', progress_bar_finished='#6206E0', "
        "progress_bar_pulse='#6206E0', batch_progress='', time='dim', processing_speed='dim underline', "
        "metrics='italic', metrics_text_delimiter=' ', metrics_format='.3f')")
    bar.disable()
    assert bar.is_disabled
    with pytest.raises(TypeError, match="has not been created yet"):
        RichProgressBar().train_progress_bar


def test_fit_draws_epoch_counts_and_metrics(tmp_path):
    bar, text = rich_fit(tmp_path)
    line = next(line for line in text.splitlines() if line.startswith("Epoch 1/1"))
    assert line.startswith("Epoch 1/1  ━")  # "Epoch 1/1" padded to len("Validation"), then the bar
    assert " 2/2 " in line and "it/s" in line and " • " in line
    assert line.rstrip().endswith("tl: 0.500 n: 3.000")
    assert bar.train_progress_bar.description == "Epoch 1/1 "
    assert bar.train_progress_bar.completed == 2 and bar.train_progress_bar.total == 2


def test_v_num_uses_the_metrics_format(tmp_path):
    console_kwargs, buffer = rich_console()
    bar = RichProgressBar(console_kwargs=console_kwargs)
    trainer = quiet_trainer(tmp_path, callbacks=[bar], enable_progress_bar=True, logger=CSVLogger(tmp_path))
    trainer.fit(LoggingModule(), make_loader(16))
    rich.reconfigure()
    assert "v_num: 0.000 tl: 0.500 n: 3.000" in buffer.getvalue()


def test_fit_with_validation_makes_sanity_and_validation_tasks(tmp_path):
    class Validating(LoggingModule):
        def validation_step(self, batch, batch_idx):
            self.log("v", 1.0)

    console_kwargs, _ = rich_console()
    bar = RichProgressBar(console_kwargs=console_kwargs)
    trainer = quiet_trainer(tmp_path, callbacks=[bar], enable_progress_bar=True, num_sanity_val_steps=1,
                            max_epochs=2, limit_val_batches=2)
    trainer.fit(Validating(), make_loader(16), make_loader(16))
    rich.reconfigure()
    assert [(task.description, task.total, task.completed, task.visible) for task in bar.progress.tasks] == [
        ("Sanity Checking", 1, 1, False), ("Epoch 1/1 ", 2, 2, True), ("Validation", 2, 2, False),
        ("Validation", 2, 2, False)]


def test_validate_test_and_predict_draw_their_tasks(tmp_path):
    class Everything(TinyModule):
        pass

    console_kwargs, buffer = rich_console()
    bar = RichProgressBar(console_kwargs=console_kwargs)
    trainer = quiet_trainer(tmp_path, callbacks=[bar], enable_progress_bar=True)
    trainer.validate(Everything(), make_loader(16), verbose=False)
    trainer.test(Everything(), make_loader(16), verbose=False)
    trainer.predict(Everything(), make_loader(16, targets=False))
    rich.reconfigure()
    lines = buffer.getvalue().splitlines()
    for name in ("Validation", "Testing", "Predicting"):
        line = next(line for line in lines if line.startswith(name))
        assert " 2/2 " in line and "tl:" not in line  # metrics only on the training bar


def test_subclass_get_metrics_and_columns_are_used(tmp_path):
    from rich.progress import TextColumn

    class Custom(RichProgressBar):
        def get_metrics(self, trainer, pl_module):
            return {"custom": "yes", **super().get_metrics(trainer, pl_module)}

        def configure_columns(self, trainer):
            return [TextColumn("<{task.description}>"), *super().configure_columns(trainer)[1:]]

    console_kwargs, buffer = rich_console()
    trainer = quiet_trainer(tmp_path, callbacks=[Custom(console_kwargs=console_kwargs)], enable_progress_bar=True)
    trainer.fit(LoggingModule(), make_loader(16))
    rich.reconfigure()
    assert "<Epoch 0/0 >" in buffer.getvalue()
    assert "custom: yes tl: 0.500" in buffer.getvalue()


def test_leave_keeps_every_epoch(tmp_path):
    _, kept = rich_fit(tmp_path, leave=True, max_epochs=3)
    assert [line[:9] for line in kept.splitlines() if line.startswith("Epoch")] == [
        "Epoch 0/2", "Epoch 1/2", "Epoch 2/2"]


def test_refresh_rate_zero_draws_nothing(tmp_path):
    bar, text = rich_fit(tmp_path, refresh_rate=0)
    assert text == "" and bar.progress is None


def test_trainer_pairs_a_rich_bar_with_the_rich_summary(tmp_path):
    trainer = quiet_trainer(tmp_path, callbacks=[RichProgressBar()], enable_progress_bar=True,
                            enable_model_summary=True)
    summaries = [cb for cb in trainer.callbacks if isinstance(cb, ModelSummary)]
    assert len(summaries) == 1 and type(summaries[0]) is RichModelSummary
    plain = quiet_trainer(tmp_path, enable_model_summary=True)
    assert [type(cb) for cb in plain.callbacks if isinstance(cb, ModelSummary)] == [ModelSummary]


def test_rich_model_summary_table(tmp_path):
    text = rich_summary_text(tmp_path)
    lines = text.splitlines()
    header = next(line for line in lines if "Name" in line)
    cells = [cell.strip() for cell in header.strip("┃").split("┃")]
    assert cells == ["", "Name", "Type", "Params", "Mode", "FLOPs"]
    row = next(line for line in lines if "layer" in line)
    assert [cell.strip() for cell in row.strip("│").split("│")] == ["0", "layer", "Linear", "66", "train", "0"]
    for total in ("Trainable params: 66", "Non-trainable params: 0", "Total params: 66",
                  "Total estimated model params size (MB): 0.000", "Modules in train mode: 1",
                  "Modules in eval mode: 0", "Total FLOPs: 0"):
        assert total in text


def test_rich_model_summary_depth_and_sizes(tmp_path):
    import torch

    module = Nested()
    module.example_input_array = torch.zeros(3, 32)
    text = rich_summary_text(tmp_path, module, max_depth=-1)
    assert "block.0" in text and "In sizes" in text and "Out sizes" in text and "[3, 32]" in text
    assert "Trainable params" not in rich_summary_text(tmp_path, max_depth=0)


def test_dataloader_without_length_shows_dashes_for_the_total(tmp_path):
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    from fulmen.demos.boring_classes import BoringModel

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(torch.randn(6, 32).unbind())

    console_kwargs, buffer = rich_console()
    trainer = quiet_trainer(tmp_path, callbacks=[RichProgressBar(console_kwargs=console_kwargs)],
                            enable_progress_bar=True, limit_train_batches=1.0)
    trainer.fit(BoringModel(), DataLoader(Stream(), batch_size=2))
    line = next(line for line in buffer.getvalue().splitlines() if line.startswith("Epoch 0/0"))
    assert " 3/-- " in line and "-:--:--" in line  # Lightning 2.6.6: "3/--" and an unknown time left
