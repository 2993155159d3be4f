"""fulmen.utilities.model_summary: the table, counts, sizes, shapes and FLOPs, as Lightning 2.6.6 prints them
(strings and numbers checked against lightning.pytorch.utilities.model_summary in a scratch venv)."""

import warnings

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.utilities.model_summary import (
    LayerSummary,
    ModelSummary,
    get_formatted_model_size,
    get_human_readable_count,
    parse_batch_shape,
    summarize,
)
from helpers.module_fixtures import LinearModule, quiet_trainer, vector_loader


class _Net(L.LightningModule):
    """encoder = Sequential(Linear(32, 80), ReLU) (2,640 params), head = Linear(80, 2) (162), 5 loose params."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 80), nn.ReLU())
        self.head = nn.Linear(80, 2)
        self.extra = nn.Parameter(torch.zeros(5))

    def forward(self, x):
        return self.head(self.encoder(x))

    def training_step(self, batch, batch_idx):
        return self(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# Lightning 2.6.6's str(ModelSummary(_Net())) verbatim.
_NET_TABLE = """\
  | Name         | Type       | Params | Mode  | FLOPs
------------------------------------------------------------
0 | encoder      | Sequential | 2.6 K  | train | 0    
1 | head         | Linear     | 162    | train | 0    
  | other params | n/a        | 5      | n/a   | n/a  
------------------------------------------------------------
2.8 K     Trainable params
0         Non-trainable params
2.8 K     Total params
0.011     Total estimated model params size (MB)
4         Modules in train mode
0         Modules in eval mode
0         Total Flops"""

# Lightning 2.6.6's str(ModelSummary(_Net() with example_input_array = zeros(4, 32), max_depth=-1)) (no loose
# parameter in this one).
_SIZED_TABLE = """\
  | Name      | Type       | Params | Mode  | FLOPs  | In sizes | Out sizes
---------------------------------------------------------------------------------
0 | encoder   | Sequential | 2.6 K  | train | 20.5 K | [4, 32]  | [4, 80]  
1 | encoder.0 | Linear     | 2.6 K  | train | 20.5 K | [4, 32]  | [4, 80]  
2 | encoder.1 | ReLU       | 0      | train | 0      | [4, 80]  | [4, 80]  
3 | head      | Linear     | 162    | train | 1.3 K  | [4, 80]  | [4, 2]   
---------------------------------------------------------------------------------
2.8 K     Trainable params
0         Non-trainable params
2.8 K     Total params
0.011     Total estimated model params size (MB)
4         Modules in train mode
0         Modules in eval mode
21.8 K    Total Flops"""


def test_table_matches_lightning():
    summary = ModelSummary(_Net())
    assert str(summary) == _NET_TABLE
    assert repr(summary) == _NET_TABLE


def test_members_of_the_summary():
    summary = summarize(_Net())
    assert isinstance(summary, ModelSummary)
    assert summary.layer_names == ["encoder", "head"]
    assert summary.layer_types == ["Sequential", "Linear"]
    assert summary.param_nums == [2640, 162]
    assert summary.in_sizes == ["?", "?"] and summary.out_sizes == ["?", "?"]
    assert summary.total_parameters == 2807 and summary.trainable_parameters == 2807
    assert summary.total_layer_params == 2802
    assert summary.model_size == pytest.approx(0.011228)
    assert summary.total_training_modes == {"train": 4, "eval": 0}
    assert summary.training_modes == [True, True]
    assert summary.total_flops == 0 and summary.flop_counts == {"encoder": {}, "head": {}}
    assert [name for name, _ in summary.named_modules] == ["encoder", "head"]


def test_example_input_array_gives_sizes_and_flops():
    model = _Net()
    del model.extra
    model.example_input_array = torch.zeros(4, 32)
    model.head.train()
    summary = ModelSummary(model, max_depth=-1)
    assert str(summary) == _SIZED_TABLE
    assert summary.in_sizes == [[4, 32], [4, 32], [4, 80], [4, 80]]
    assert summary.out_sizes == [[4, 80], [4, 80], [4, 80], [4, 2]]
    assert summary.total_flops == 21760
    assert {name: sum(ops.values()) for name, ops in summary.flop_counts.items()} == {
        "encoder": 20480, "encoder.0": 20480, "encoder.1": 0, "head": 1280}
    assert model.training and model.encoder[0].training  # modes restored after the example forward


def test_tuple_and_dict_example_inputs():
    class TwoInputs(_Net):
        def forward(self, x, scale=None):
            out = super().forward(x)
            return out, [out * 2]

    model = TwoInputs()
    model.example_input_array = (torch.zeros(4, 32), torch.zeros(2))
    summary = ModelSummary(model)
    assert (summary.in_sizes[0], summary.out_sizes[1]) == ([4, 32], [4, 2])
    model.example_input_array = {"x": torch.zeros(3, 32)}
    assert ModelSummary(model).in_sizes[0] == [3, 32]


def test_max_depth_cut_and_bad_values():
    model = _Net()
    model.encoder.append(nn.Sequential(nn.Linear(80, 80)))
    assert ModelSummary(model, max_depth=2).layer_names == ["encoder", "encoder.0", "encoder.1", "encoder.2", "head"]
    assert "encoder.2.0" in ModelSummary(model, max_depth=-1).layer_names
    assert ModelSummary(model, max_depth=0).layer_names == []
    for bad in (-2, 1.5, "1"):
        with pytest.raises(ValueError, match=r"`max_depth` can be -1, 0 or > 0"):
            ModelSummary(model, max_depth=bad)


@pytest.mark.parametrize(("number", "text"), [
    (0, "0  "), (66, "66  "), (999, "999  "), (1000, "1.0 K"), (1234, "1.2 K"), (99999, "100.0 K"),
    (100000, "100 K"), (123456, "123 K"), (2e6, "2.0 M"), (3e9, "3.0 B"), (4e14, "400 T"), (5e15, "5,000 T"),
])
def test_human_readable_count(number, text):
    assert get_human_readable_count(number) == text


def test_formatted_model_size_and_batch_shape():
    assert get_formatted_model_size(1234.56789) == "1,234.568"
    assert get_formatted_model_size(0.0112) == "0.011"
    assert parse_batch_shape(torch.zeros(2, 3)) == [2, 3]
    assert parse_batch_shape([torch.zeros(2), (torch.zeros(1, 1), 3)]) == [[2], [[1, 1], "?"]]
    assert parse_batch_shape("text") == "?"


def test_layer_summary_records_its_first_forward():
    layer = LayerSummary(nn.Conv2d(3, 8, 3))
    assert (layer.num_parameters, layer.layer_type, layer.in_size, layer.out_size) == (224, "Conv2d", "?", "?")
    assert layer.training
    layer._module(torch.rand(1, 3, 5, 5))
    assert (layer.in_size, layer.out_size) == ([1, 3, 5, 5], [1, 8, 3, 3])
    layer._module(torch.rand(2, 3, 6, 6))
    assert layer.in_size == [1, 3, 5, 5]  # first call only
    detached = LayerSummary(nn.Linear(2, 2))
    detached.detach_hook()
    detached._module(torch.zeros(1, 2))
    assert detached.in_size == "?"


@pytest.mark.parametrize(("precision", "size"), [("64-true", 0.000528), ("bf16-true", 0.000132),
                                                 ("32-true", 0.000264), ("bf16-mixed", 0.000264)])
def test_model_size_follows_the_trainer_precision(tmp_path, precision, size):
    model = LinearModule()  # 66 parameters
    model.trainer = quiet_trainer(tmp_path, precision=precision)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ModelSummary(model).model_size == pytest.approx(size)


def test_the_callback_and_the_utility_share_the_table(tmp_path, caplog):
    import logging

    model = _Net()
    with caplog.at_level(logging.INFO, logger="fulmen"):
        quiet_trainer(tmp_path, enable_model_summary=True).fit(model, vector_loader())
    assert _NET_TABLE in caplog.text


def test_uninitialized_parameters_are_not_counted_and_warn():
    model = nn.Sequential(nn.LazyLinear(4), nn.Linear(4, 2))
    summary = ModelSummary(model)
    with pytest.warns(UserWarning, match="UninitializedParameter"):
        assert summary.param_nums == [0, 10]  # counted (and warned about, once) when read
    assert summary.total_parameters == 10


def test_a_module_in_eval_mode_is_counted():
    model = _Net()
    model.head.eval()
    summary = ModelSummary(model)
    assert summary.training_modes == [True, False]
    assert summary.total_training_modes == {"train": 3, "eval": 1}
    assert "1         Modules in eval mode" in str(summary)
