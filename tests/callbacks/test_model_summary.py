"""ModelSummary: the table logged (on the "fulmen" logger, captured with caplog) when fit starts."""

import logging

import pytest
import torch
from torch import nn

from fulmen.callbacks import ModelSummary
from helpers.module_fixtures import LinearModule, quiet_trainer, vector_loader


class _EncoderHead(LinearModule):
    """encoder = Sequential(Linear(32, 80), ReLU) with 2,640 params; head = Linear(80, 2) with 162."""

    def __init__(self):
        super().__init__()
        del self.layer
        self.encoder = nn.Sequential(nn.Linear(32, 80), nn.ReLU())
        self.head = nn.Linear(80, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


def _summary_lines(caplog, tmp_path, model, **trainer_kwargs):
    options = dict(enable_model_summary=True)
    options.update(trainer_kwargs)
    with caplog.at_level(logging.INFO, logger="fulmen"):
        quiet_trainer(tmp_path, **options).fit(model, vector_loader())
    text = "\n".join(record.getMessage() for record in caplog.records if record.name == "fulmen")
    return text.splitlines()


def _row(lines, name):
    for line in lines:
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 2 and cells[1] == name:
            return cells
    raise AssertionError(f"no row named {name!r} in:\n" + "\n".join(lines))


def _footer(lines, label):
    for line in lines:
        if line.rstrip().endswith(label):
            return line[: -len(label)].strip()
    raise AssertionError(f"no footer {label!r}")


def test_default_summary_lists_top_level_layers(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, _EncoderHead())
    header = [cell.strip() for cell in next(line for line in lines if "Name" in line).split("|")]
    assert header[1:5] == ["Name", "Type", "Params", "Mode"]
    assert _row(lines, "encoder")[2:5] == ["Sequential", "2.6 K", "train"]
    assert _row(lines, "head")[2:5] == ["Linear", "162", "train"]
    assert not any("encoder.0" in line for line in lines)


def test_single_linear_shows_exact_count(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, LinearModule())
    assert _row(lines, "layer")[2:4] == ["Linear", "66"]
    assert _footer(lines, "Total params") == "66"


def test_footer_counts_and_size(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, _EncoderHead())
    assert _footer(lines, "Trainable params") == "2.8 K"
    assert _footer(lines, "Non-trainable params") == "0"
    assert _footer(lines, "Total params") == "2.8 K"
    assert _footer(lines, "Total estimated model params size (MB)") == "0.011"
    assert _footer(lines, "Modules in train mode") == "4"
    assert _footer(lines, "Modules in eval mode") == "0"


def test_frozen_submodule_moves_params_to_non_trainable(caplog, tmp_path):
    model = _EncoderHead()
    model.encoder.requires_grad_(False)
    lines = _summary_lines(caplog, tmp_path, model)
    assert _footer(lines, "Trainable params") == "162"
    assert _footer(lines, "Non-trainable params") == "2.6 K"
    assert _footer(lines, "Total params") == "2.8 K"


def test_submodule_in_eval_mode_is_reported(caplog, tmp_path):
    model = _EncoderHead()
    model.head.eval()
    lines = _summary_lines(caplog, tmp_path, model)
    assert _row(lines, "head")[4] == "eval"
    assert _footer(lines, "Modules in train mode") == "3"
    assert _footer(lines, "Modules in eval mode") == "1"


def test_max_depth_two_lists_nested_children(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, _EncoderHead(), callbacks=[ModelSummary(max_depth=2)])
    assert _row(lines, "encoder.0")[2:4] == ["Linear", "2.6 K"]
    assert _row(lines, "encoder.1")[2:4] == ["ReLU", "0"]
    indices = [_row(lines, name)[0] for name in ("encoder", "encoder.0", "encoder.1", "head")]
    assert indices == ["0", "1", "2", "3"]


def test_max_depth_zero_prints_nothing(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, _EncoderHead(), callbacks=[ModelSummary(max_depth=0)])
    assert not any("Trainable params" in line for line in lines)


def test_enable_model_summary_false_prints_nothing(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, _EncoderHead(), enable_model_summary=False)
    assert not any("Trainable params" in line for line in lines)
    assert not any(isinstance(cb, ModelSummary) for cb in quiet_trainer(tmp_path).callbacks)


def test_default_trainer_adds_one_model_summary(tmp_path):
    trainer = quiet_trainer(tmp_path, enable_model_summary=True)
    assert sum(isinstance(cb, ModelSummary) for cb in trainer.callbacks) == 1
    mine = ModelSummary(max_depth=3)
    trainer = quiet_trainer(tmp_path, enable_model_summary=True, callbacks=[mine])
    assert [cb for cb in trainer.callbacks if isinstance(cb, ModelSummary)] == [mine]


def test_double_precision_doubles_the_size(caplog, tmp_path):
    lines = _summary_lines(caplog, tmp_path, _EncoderHead(), precision="64-true")
    assert _footer(lines, "Total estimated model params size (MB)") == "0.022"


def test_summary_only_at_fit_not_validate(caplog, tmp_path):
    class WithValidation(_EncoderHead):
        def validation_step(self, batch, batch_idx):
            self.log("v", self(batch).sum())

    trainer = quiet_trainer(tmp_path, enable_model_summary=True)
    with caplog.at_level(logging.INFO, logger="fulmen"):
        trainer.validate(WithValidation(), vector_loader(), verbose=False)
    assert "Trainable params" not in caplog.text


def test_large_counts_drop_the_decimal(caplog, tmp_path):
    model = _EncoderHead()
    model.big = nn.Linear(480, 256)
    lines = _summary_lines(caplog, tmp_path, model)
    assert _row(lines, "big")[3] == "123 K"
    assert _footer(lines, "Total params") == "125 K"


def test_example_input_array_adds_in_and_out_sizes(caplog, tmp_path):
    model = _EncoderHead()
    model.example_input_array = torch.zeros(4, 32)
    lines = _summary_lines(caplog, tmp_path, model)
    assert any("In sizes" in line and "Out sizes" in line for line in lines)
    assert "[4, 32]" in _row(lines, "encoder") and "[4, 80]" in _row(lines, "encoder")


def test_overridden_summarize_receives_the_columns_and_totals(tmp_path):
    received = {}

    class Recording(ModelSummary):
        @staticmethod
        def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                      total_flops, **summarize_kwargs):
            received.update(data=summary_data, total=total_parameters, trainable=trainable_parameters,
                            size=model_size, modes=total_training_modes, flops=total_flops)

    quiet_trainer(tmp_path, callbacks=[Recording()], enable_model_summary=True).fit(LinearModule(), vector_loader())
    assert received["data"] == [(" ", ["0"]), ("Name", ["layer"]), ("Type", ["Linear"]), ("Params", ["66  "]),
                                ("Mode", ["train"]), ("FLOPs", ["0  "])]
    assert (received["total"], received["trainable"], received["modes"], received["flops"]) == (
        66, 66, {"train": 1, "eval": 0}, 0)
    assert received["size"] == pytest.approx(66 * 4e-6)


def test_bad_max_depth_or_keyword_is_refused():
    with pytest.raises(ValueError, match=r"`max_depth` can be -1, 0 or > 0, got -2"):
        ModelSummary(max_depth=-2)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        ModelSummary(header_style="bold")
