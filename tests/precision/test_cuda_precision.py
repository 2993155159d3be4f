"""CUDA-only precision paths: float16 autocast with a GradScaler. They skip cleanly without a GPU.

`scripts/gpu_check.sh` runs this file (and the rest of the suite) on a machine with a GPU.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.precision import MixedPrecision

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Probe(L.LightningModule):
    def __init__(self, poison_batch=None):
        super().__init__()
        self.layer = nn.Linear(8, 1)
        self.poison_batch = poison_batch
        self.autocast_dtypes, self.grads_seen = [], []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.autocast_dtypes.append(torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None)
        loss = F.mse_loss(self.layer(x).float(), y)
        if batch_idx == self.poison_batch:
            loss = loss * float("inf")  # the scaler must skip this step
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.grads_seen.append(self.layer.weight.grad.abs().max().item())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(32, 8, generator=generator), torch.randn(32, 1, generator=generator)),
                      batch_size=8)


def _trainer(**flags):
    return L.Trainer(accelerator="cuda", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, **flags)


def test_16_mixed_uses_float16_autocast_and_a_grad_scaler():
    model = Probe()
    trainer = _trainer(precision="16-mixed", max_epochs=1)
    trainer.fit(model, _loader())
    assert isinstance(trainer.precision_plugin, MixedPrecision) and trainer.precision_plugin.scaler is not None
    assert set(model.autocast_dtypes) == {torch.float16}
    assert model.layer.weight.device.type == "cuda"
    # on_before_optimizer_step sees unscaled gradients: far below the scaler's 65536x scale
    assert max(model.grads_seen) < 1000


def test_16_mixed_skips_the_step_when_gradients_are_not_finite():
    model = Probe(poison_batch=1)
    trainer = _trainer(precision="16-mixed", max_steps=2)
    scale_before = None

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            nonlocal scale_before
            if batch_idx == 1:
                scale_before = trainer.precision_plugin.scaler.get_scale()
                self.weight = pl_module.layer.weight.detach().clone()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 1:
                self.weight_after = pl_module.layer.weight.detach().clone()

    spy = Spy()
    trainer.callbacks.append(spy)
    trainer.fit(model, _loader())
    assert torch.equal(spy.weight, spy.weight_after)  # the inf step was skipped
    assert trainer.precision_plugin.scaler.get_scale() < scale_before  # and the scale backed off


def test_grad_scaler_state_is_saved_and_restored(tmp_path):
    model = Probe()
    trainer = _trainer(precision="16-mixed", max_epochs=1)
    trainer.fit(model, _loader())
    path = tmp_path / "amp.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["MixedPrecision"]["scale"] == trainer.precision_plugin.scaler.get_scale()


def test_bf16_mixed_on_cuda():
    model = Probe()
    _trainer(precision="bf16-mixed", max_epochs=1).fit(model, _loader())
    assert set(model.autocast_dtypes) == {torch.bfloat16}
