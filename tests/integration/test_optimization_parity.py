"""A fulmen run and a hand-written PyTorch loop with the same seed reach the same parameters."""

import contextlib

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L

EPOCHS = 3


def _data(seed=0, n=40):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    y = x @ torch.randn(6, 1, generator=generator) + 0.1 * torch.randn(n, 1, generator=generator)
    return TensorDataset(x, y)


def _loader(dataset, shuffle=True, batch_size=8):
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(1))


def _net():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def _batches(loader):
    """Exactly len(loader) batches, as fulmen and Lightning draw them (no extra sampler permutation)."""
    iterator = iter(loader)
    for batch_idx in range(len(loader)):
        yield batch_idx, next(iterator)


class Regressor(L.LightningModule):
    def __init__(self, make_optimizer, scheduler_config=None, precision_autocast=False):
        super().__init__()
        self.net = _net()
        self.make_optimizer = make_optimizer
        self.scheduler_config = scheduler_config

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x).float(), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.net.parameters())
        if self.scheduler_config is None:
            return optimizer
        config = self.scheduler_config(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": config}


def _fit(module, train, val=None, **flags):
    trainer = L.Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", **flags)
    trainer.fit(module, _loader(train), _loader(val, shuffle=False) if val is not None else None)
    return trainer


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def _train_by_hand(train, after_backward=None, after_step=None, after_epoch=None, autocast=False):
    """The loop a user would write: forward, zero_grad, backward, (clip), step, (schedule)."""
    net = _net()
    optimizer = _sgd(net.parameters())
    loader = _loader(train)
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    for _ in range(EPOCHS):
        for _, (x, y) in _batches(loader):
            with context():
                loss = F.mse_loss(net(x).float(), y)
            optimizer.zero_grad()
            loss.backward()
            if after_backward is not None:
                after_backward(net)
            optimizer.step()
            if after_step is not None:
                after_step(optimizer)
        if after_epoch is not None:
            after_epoch(net, optimizer)
    return net, optimizer


def _assert_same_parameters(module, net, atol=0.0):
    for ours, theirs in zip(module.net.parameters(), net.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=atol)


def test_plain_sgd_matches_a_hand_written_loop():
    train = _data()
    module = Regressor(_sgd)
    _fit(module, train)
    net, _ = _train_by_hand(train)
    _assert_same_parameters(module, net)


def test_accumulating_three_batches_matches_one_step_per_window():
    train = _data(n=40)  # 5 batches: steps after batches 2 and 4 (the incomplete last window still steps)
    module = Regressor(_sgd)
    trainer = _fit(module, train, accumulate_grad_batches=3)
    assert trainer.global_step == 2 * EPOCHS

    net = _net()
    optimizer = _sgd(net.parameters())
    loader = _loader(train)
    for _ in range(EPOCHS):
        for batch_idx, (x, y) in _batches(loader):
            (F.mse_loss(net(x), y) / 3).backward()
            if (batch_idx + 1) % 3 == 0 or batch_idx == len(loader) - 1:
                optimizer.step()
                optimizer.zero_grad()
    _assert_same_parameters(module, net, atol=1e-7)


def test_gradient_clipping_by_norm_matches_clip_grad_norm():
    train = _data()
    module = Regressor(_sgd)
    _fit(module, train, gradient_clip_val=0.05, gradient_clip_algorithm="norm")
    net, _ = _train_by_hand(train, after_backward=lambda net: torch.nn.utils.clip_grad_norm_(net.parameters(), 0.05))
    _assert_same_parameters(module, net)


def test_step_interval_scheduler_steps_after_every_optimizer_step():
    train = _data()

    def schedule(optimizer):
        return {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9), "interval": "step"}

    module = Regressor(_sgd, schedule)
    trainer = _fit(module, train)
    schedulers = {}

    def schedule_step(optimizer):
        scheduler = schedulers.setdefault("lr", torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9))
        scheduler.step()

    net, optimizer = _train_by_hand(train, after_step=schedule_step)
    _assert_same_parameters(module, net)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])


def test_reduce_lr_on_plateau_follows_the_validation_metric():
    train, val = _data(seed=0), _data(seed=5, n=16)

    def plateau(optimizer):
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=0.5)
        return {"scheduler": scheduler, "monitor": "val_loss"}

    module = Regressor(_sgd, plateau)
    trainer = _fit(module, train, val)

    net = _net()
    optimizer = _sgd(net.parameters())
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=0.5)
    loader, val_loader = _loader(train), _loader(val, shuffle=False)
    for _ in range(EPOCHS):
        for _, (x, y) in _batches(loader):
            loss = F.mse_loss(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():  # the epoch mean of per-batch losses, weighted by batch size
            total = sum(F.mse_loss(net(x), y) * len(x) for x, y in val_loader)
        scheduler.step(total / len(val))
    _assert_same_parameters(module, net, atol=1e-6)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(optimizer.param_groups[0]["lr"])
    assert lr < 0.05  # the plateau really reduced it


def test_bf16_mixed_on_cpu_matches_a_hand_written_autocast_loop():
    train = _data()
    module = Regressor(_sgd)
    _fit(module, train, precision="bf16-mixed")
    net, _ = _train_by_hand(train, autocast=True)
    _assert_same_parameters(module, net)
