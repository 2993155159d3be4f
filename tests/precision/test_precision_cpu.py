"""Precision modes on CPU: parameter and input dtypes, autocast, names and aliases.

Expected dtypes, names and warnings were observed by running Lightning 2.6.6 on CPU with the same flags.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from helpers.tiny import make_loader, quiet_trainer


def _autocast_dtype():
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


class Probe(L.LightningModule):
    """Linear(32, 2) that records, per stage, the dtypes it sees inside its step methods."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(32, 2)
        self.seen = {}

    def _record(self, stage, batch):
        x, y = batch
        out = self.layer(x)
        self.seen.setdefault(stage, dict(
            x=x.dtype, y=y.dtype, weight=self.layer.weight.dtype, autocast=_autocast_dtype(), out=out.dtype,
            default=torch.get_default_dtype(), new_tensor=torch.ones(1).dtype,
        ))
        return out

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self._record("train", batch).float(), batch[1])

    def validation_step(self, batch, batch_idx):
        self._record("validate", batch)

    def predict_step(self, batch, batch_idx):
        return self._record("predict", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, precision, **flags):
    flags = {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "num_sanity_val_steps": 0, **flags}
    if precision is not ...:
        flags["precision"] = precision
    return quiet_trainer(tmp_path, **flags)


def _run_all_stages(tmp_path, precision):
    """fit, validate and predict a Probe; return (trainer, probe, predictions)."""
    module = Probe()
    trainer = _trainer(tmp_path, precision, limit_train_batches=2)
    trainer.fit(module, make_loader(16), make_loader(16))
    trainer.validate(module, make_loader(16))
    predictions = trainer.predict(module, make_loader(16))
    return trainer, module, predictions


# -- true precision: parameters and inputs converted -----------------------------------------------------------


TRUE_MODES = [("64-true", torch.float64), ("bf16-true", torch.bfloat16), ("16-true", torch.float16)]


@pytest.mark.parametrize("precision, dtype", TRUE_MODES)
def test_true_precision_converts_parameters_and_float_inputs_in_every_stage(tmp_path, precision, dtype):
    trainer, module, predictions = _run_all_stages(tmp_path, precision)
    assert trainer.precision == precision
    for stage in ("train", "validate", "predict"):
        seen = module.seen[stage]
        assert (seen["x"], seen["weight"], seen["out"]) == (dtype, dtype, dtype), stage
        assert seen["y"] == torch.int64, stage  # integer inputs are left alone
        assert seen["autocast"] is None, stage
    assert module.layer.weight.dtype == dtype
    assert all(prediction.dtype == dtype for prediction in predictions)


@pytest.mark.parametrize("precision, dtype", [
    ("64-true", torch.float64),
    ("bf16-true", torch.bfloat16),
    ("16-true", torch.float16),
])
def test_true_precision_sets_the_default_dtype_inside_steps(tmp_path, precision, dtype):
    _, module, _ = _run_all_stages(tmp_path, precision)
    for stage in ("train", "validate", "predict"):
        assert module.seen[stage]["default"] == dtype and module.seen[stage]["new_tensor"] == dtype, stage
    assert torch.get_default_dtype() == torch.float32  # restored after each run


def test_64_true_casts_float_tensors_nested_in_a_dict_batch(tmp_path):
    class DictBatch(Probe):
        def training_step(self, batch, batch_idx):
            self.seen.setdefault("dtypes", {key: value.dtype for key, value in batch.items()})
            return self.layer(batch["x"]).sum()

    samples = [{"x": torch.randn(32), "index": torch.tensor(i), "mask": torch.tensor(True)} for i in range(8)]
    module = DictBatch()
    _trainer(tmp_path, "64-true", limit_val_batches=0).fit(module, DataLoader(samples, batch_size=4))
    assert module.seen["dtypes"] == {"x": torch.float64, "index": torch.int64, "mask": torch.bool}


def test_a_float64_batch_is_cast_down_under_bf16_true(tmp_path):
    data = TensorDataset(torch.randn(8, 32, dtype=torch.float64), torch.tensor([0, 1] * 4))
    module = Probe()
    _trainer(tmp_path, "bf16-true", limit_val_batches=0).fit(module, DataLoader(data, batch_size=4))
    assert module.seen["train"]["x"] == torch.bfloat16


# -- mixed precision: autocast, parameters stay float32 ---------------------------------------------------------


def test_bf16_mixed_autocasts_every_step_and_keeps_float32_parameters(tmp_path):
    trainer, module, predictions = _run_all_stages(tmp_path, "bf16-mixed")
    assert trainer.precision == "bf16-mixed"
    for stage in ("train", "validate", "predict"):
        seen = module.seen[stage]
        assert seen["autocast"] == torch.bfloat16, stage
        assert (seen["x"], seen["weight"], seen["default"]) == (torch.float32,) * 3, stage
        assert seen["out"] == torch.bfloat16, stage  # the linear layer ran under autocast
    assert module.layer.weight.dtype == torch.float32
    assert all(prediction.dtype == torch.bfloat16 for prediction in predictions)


def test_autocast_is_off_outside_the_step_methods(tmp_path):
    class Hooks(Probe):
        def on_train_batch_start(self, batch, batch_idx):
            self.seen.setdefault("batch_start", _autocast_dtype())

        def on_before_optimizer_step(self, optimizer):
            self.seen.setdefault("before_optimizer_step", _autocast_dtype())

    module = Hooks()
    _trainer(tmp_path, "bf16-mixed", limit_train_batches=1, limit_val_batches=0).fit(module, make_loader(16))
    assert module.seen["batch_start"] is None and module.seen["before_optimizer_step"] is None
    assert module.seen["train"]["autocast"] == torch.bfloat16


def test_bf16_mixed_training_changes_the_float32_weights(tmp_path):
    module = Probe()
    before = module.layer.weight.detach().clone()
    _trainer(tmp_path, "bf16-mixed", limit_train_batches=2, limit_val_batches=0).fit(module, make_loader(16))
    assert module.layer.weight.dtype == torch.float32 and not torch.equal(before, module.layer.weight)
    assert module.layer.weight.grad.dtype == torch.float32


# -- names and aliases -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision, name", [
    (..., "32-true"), (None, "32-true"), (32, "32-true"), ("32", "32-true"), ("32-true", "32-true"),
    (64, "64-true"), ("64", "64-true"), ("64-true", "64-true"),
    ("bf16", "bf16-mixed"), ("bf16-mixed", "bf16-mixed"), ("bf16-true", "bf16-true"), ("16-true", "16-true"),
], ids=lambda value: repr(value))
def test_precision_names_and_aliases(tmp_path, precision, name):
    trainer = _trainer(tmp_path, precision)
    assert trainer.precision == name


@pytest.mark.parametrize("precision", ["16-mixed", 16, "16"])
def test_16_mixed_on_cpu_falls_back_to_bf16_mixed_with_a_warning(tmp_path, precision):
    with pytest.warns(UserWarning, match=r"bf16-mixed"):
        trainer = _trainer(tmp_path, precision)
    assert trainer.precision == "bf16-mixed"
    module = Probe()
    trainer.fit(module, make_loader(16), make_loader(16))
    assert module.seen["train"]["autocast"] == torch.bfloat16


def test_the_bf16_alias_warns_to_use_bf16_mixed(tmp_path):
    with pytest.warns(UserWarning, match="bf16-mixed"):
        _trainer(tmp_path, "bf16")


@pytest.mark.filterwarnings("ignore:.*16-mixed.*:UserWarning")
@pytest.mark.parametrize("precision", ["32-true", "64-true", "bf16-true", "16-true", "bf16-mixed", "16-mixed"])
def test_precision_without_a_scaler_has_an_empty_state_dict(tmp_path, precision):
    trainer = _trainer(tmp_path, precision)
    assert trainer.precision_plugin.state_dict() == {}
