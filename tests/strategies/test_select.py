"""Hardware flags: accelerator, devices and precision resolve to a SingleDeviceStrategy on this CPU machine,
with Lightning's errors for the ones that cannot run; bf16-mixed and 64-true fits behave as Lightning's."""

import pytest
import torch

import fulmen as L
from fulmen.strategies import SingleDeviceStrategy, Strategy
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.module_fixtures import LinearModule, quiet_trainer, vector_loader

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors raised when CUDA is missing")
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="'auto' picks CUDA on a GPU machine")


def _trainer(**kwargs):
    return L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


@cpu_only
@pytest.mark.parametrize("accelerator", ["auto", "cpu"])
def test_auto_and_cpu_give_a_single_cpu_device(accelerator):
    trainer = _trainer(accelerator=accelerator)
    assert isinstance(trainer.strategy, SingleDeviceStrategy)
    assert isinstance(trainer.strategy, Strategy)
    assert trainer.strategy.root_device == torch.device("cpu")
    assert trainer.num_devices == 1 and trainer.world_size == 1
    assert trainer.global_rank == 0 and trainer.is_global_zero


@no_cuda
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_without_cuda_raises(accelerator):
    if accelerator == "gpu" and torch.backends.mps.is_available():
        pytest.skip("'gpu' picks MPS here")
    with pytest.raises(MisconfigurationException):
        _trainer(accelerator=accelerator)


@pytest.mark.parametrize("accelerator", ["tpuu", "quantum", None])
def test_unknown_accelerator_names_the_allowed_ones(accelerator):
    with pytest.raises(ValueError) as error:
        _trainer(accelerator=accelerator)
    message = str(error.value)
    assert "cpu" in message and "cuda" in message and "auto" in message


@pytest.mark.parametrize("devices", ["auto", 1, "1"])
def test_single_device_values_are_accepted(devices):
    trainer = _trainer(accelerator="cpu", devices=devices)
    assert isinstance(trainer.strategy, SingleDeviceStrategy)
    assert trainer.num_devices == 1


def test_zero_devices_raises():
    with pytest.raises(MisconfigurationException, match="devices"):
        _trainer(accelerator="cpu", devices=0)


@pytest.mark.parametrize("devices", [-1, "-1"])
@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_all_devices_has_no_meaning_on_cpu(devices, accelerator, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(TypeError, match="devices=-1.*CPUAccelerator.*int > 0"):
        _trainer(accelerator=accelerator, devices=devices)


def test_two_cpu_devices_select_ddp_with_two_processes(monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    trainer = _trainer(accelerator="cpu", devices=2)
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert trainer.world_size == 2 and trainer.num_devices == 2
    assert trainer.strategy.process_group_backend == "gloo"


def test_explicit_strategy_instance_is_used():
    strategy = SingleDeviceStrategy("cpu")
    assert _trainer(strategy=strategy).strategy is strategy


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "32-true"), ("32-true", "32-true"), (32, "32-true"), ("32", "32-true"),
        ("bf16-mixed", "bf16-mixed"), ("bf16", "bf16-mixed"),
        ("64-true", "64-true"), (64, "64-true"), ("64", "64-true"),
        ("16-true", "16-true"), ("bf16-true", "bf16-true"),
    ],
)
def test_precision_names_resolve_to_the_canonical_name(value, name):
    trainer = _trainer(accelerator="cpu") if value is None else _trainer(accelerator="cpu", precision=value)
    assert trainer.precision == name


@pytest.mark.parametrize("value", ["17", "fp8", 8, "half"])
def test_unknown_precision_raises_value_error(value):
    with pytest.raises(ValueError, match="32-true"):
        _trainer(accelerator="cpu", precision=value)


@no_cuda
@pytest.mark.parametrize("value", ["16-mixed", 16, "16"], ids=["16-mixed", "int-16", "str-16"])
def test_16_mixed_on_cpu_falls_back_to_bf16_mixed(value):
    with pytest.warns(UserWarning, match="bf16-mixed"):
        trainer = _trainer(accelerator="cpu", precision=value)
    assert trainer.precision == "bf16-mixed"


# -- precision in a fit --------------------------------------------------------------------------------


class _PrecisionProbe(LinearModule):
    def __init__(self):
        super().__init__()
        self.seen = []
        self.losses = []

    def training_step(self, batch, batch_idx):
        output = self(batch)
        self.seen.append({
            "autocast": torch.is_autocast_enabled("cpu"),
            "batch_dtype": batch.dtype,
            "param_dtype": self.layer.weight.dtype,
            "output_dtype": output.dtype,
            "default_dtype": torch.get_default_dtype(),
        })
        loss = output.float().sum()
        self.log("epoch_loss", loss, on_step=False, on_epoch=True)
        self.losses.append(loss.detach())
        return loss


def test_bf16_mixed_fit_trains_with_finite_loss(tmp_path):
    model = _PrecisionProbe()
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(tmp_path, precision="bf16-mixed")
    trainer.fit(model, vector_loader())
    assert torch.isfinite(torch.stack(model.losses)).all()
    assert torch.isfinite(trainer.callback_metrics["epoch_loss"])
    assert not torch.equal(before, model.layer.weight)
    assert model.layer.weight.dtype == torch.float32
    assert model.seen[0]["batch_dtype"] == torch.float32


def test_bf16_mixed_runs_training_step_under_autocast(tmp_path):
    model = _PrecisionProbe()
    quiet_trainer(tmp_path, precision="bf16-mixed").fit(model, vector_loader())
    assert model.seen[0]["autocast"] is True
    assert model.seen[0]["output_dtype"] == torch.bfloat16


def test_bf16_mixed_predictions_are_bfloat16(tmp_path):
    predictions = quiet_trainer(tmp_path, precision="bf16-mixed").predict(LinearModule(), vector_loader())
    assert predictions[0].dtype == torch.bfloat16


def test_32_true_fit_does_not_autocast(tmp_path):
    model = _PrecisionProbe()
    quiet_trainer(tmp_path).fit(model, vector_loader())
    assert model.seen[0]["autocast"] is False
    assert model.seen[0]["output_dtype"] == torch.float32


def test_64_true_fit_makes_parameters_and_float_batches_double(tmp_path):
    model = _PrecisionProbe()
    trainer = quiet_trainer(tmp_path, precision="64-true")
    trainer.fit(model, vector_loader())
    assert model.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model.seen[0]["batch_dtype"] == torch.float64
    assert model.seen[0]["param_dtype"] == torch.float64
    assert torch.isfinite(trainer.callback_metrics["epoch_loss"])


def test_64_true_predictions_are_double(tmp_path):
    predictions = quiet_trainer(tmp_path, precision="64-true").predict(LinearModule(), vector_loader())
    assert predictions[0].dtype == torch.float64


def test_64_true_sets_the_default_dtype_inside_training_step(tmp_path):
    model = _PrecisionProbe()
    quiet_trainer(tmp_path, precision="64-true").fit(model, vector_loader())
    assert model.seen[0]["default_dtype"] == torch.float64
    assert torch.get_default_dtype() == torch.float32


def test_bf16_true_fit_makes_parameters_and_batches_bfloat16(tmp_path):
    model = _PrecisionProbe()
    quiet_trainer(tmp_path, precision="bf16-true").fit(model, vector_loader())
    assert model.dtype == torch.bfloat16
    assert model.seen[0]["batch_dtype"] == torch.bfloat16


def test_the_trainer_says_whether_a_gpu_is_available_and_used(tmp_path, caplog):
    L.Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
    gpu = " (cuda)" if torch.cuda.is_available() else " (mps)" if torch.backends.mps.is_available() else ""
    assert f"GPU available: {bool(gpu)}{gpu}, used: False" in caplog.text  # Lightning's lines
    assert "TPU available: False, using: 0 TPU cores" in caplog.text


@pytest.mark.parametrize(("flags", "ids"), [(dict(devices=1), [0]), (dict(devices=2), [0, 1]),
                                            (dict(devices=3, strategy="ddp_spawn"), [0, 1, 2])])
def test_device_ids_list_every_process_on_the_node(tmp_path, flags, ids):
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu", **flags)
    assert trainer.device_ids == ids and trainer.num_devices == len(ids)  # as Lightning
