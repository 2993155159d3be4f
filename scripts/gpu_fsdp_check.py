"""FSDP on CUDA with NCCL, in bf16-mixed, bf16-true and 16-mixed (ShardedGradScaler), on every visible GPU (1 is
enough to exercise the paths).

Run by scripts/gpu_check.sh. Each case fits a small MLP for a few steps, checks the loss fell and is finite,
saves a sharded and a full checkpoint, and resumes from it; then a model made in `configure_model` is checked to
start on the meta device and train.
"""

import os
import sys
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.strategies import FSDPStrategy


class Mlp(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 1))
        self.losses = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).float(), y)
        self.losses.append(loss.detach().float().item())
        self.log("loss", loss, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 64, generator=generator)
    return DataLoader(TensorDataset(x, x[:, :1] * 2.0), batch_size=32)


def fit(root, precision, state_dict_type, ckpt_path=None, max_epochs=2):
    trainer = L.Trainer(default_root_dir=root, accelerator="gpu", devices=torch.cuda.device_count(),
                        strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}, state_dict_type=state_dict_type),
                        precision=precision, max_epochs=max_epochs, logger=False, enable_progress_bar=False)
    model = Mlp()
    trainer.fit(model, data(), ckpt_path=ckpt_path)
    return trainer, model


class Configured(Mlp):
    def __init__(self):
        L.LightningModule.__init__(self)
        self.net, self.built_on, self.losses = None, None, []

    def configure_model(self):
        if self.net is None:
            self.net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                                     nn.Linear(256, 1))
        self.built_on = str(next(self.net.parameters()).device)


def check_configure_model_on_meta():
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(default_root_dir=root, accelerator="gpu", devices=torch.cuda.device_count(),
                            strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}), max_epochs=4, logger=False,
                            enable_progress_bar=False)
        model = Configured()
        trainer.fit(model, data())
        assert model.built_on == "meta", model.built_on
        first, last = sum(model.losses[:4]) / 4, sum(model.losses[-4:]) / 4
        assert last < first, (model.losses[:4], model.losses[-4:])
        if trainer.is_global_zero:
            print(f"FSDP configure_model on meta: mean loss {first:.4f} -> {last:.4f}: OK")


def main():
    assert torch.cuda.is_available(), "no CUDA device visible"
    check_configure_model_on_meta()
    for precision in ("bf16-mixed", "bf16-true", "16-mixed"):
        for state_dict_type in ("sharded", "full"):
            with tempfile.TemporaryDirectory() as root:
                trainer, model = fit(root, precision, state_dict_type)
                assert all(map(lambda v: v == v and abs(v) < 1e6, model.losses)), model.losses
                assert model.losses[-1] < model.losses[0], (precision, model.losses[:3], model.losses[-3:])
                path = os.path.join(root, "explicit.ckpt")
                trainer.save_checkpoint(path)
                resumed, _ = fit(root, precision, state_dict_type, ckpt_path=path, max_epochs=3)
                assert resumed.global_step == trainer.global_step * 3 // 2
                if trainer.is_global_zero:
                    print(f"FSDP {precision:10s} {state_dict_type:7s}: loss {model.losses[0]:.4f} -> "
                          f"{model.losses[-1]:.4f}, resumed to step {resumed.global_step}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
