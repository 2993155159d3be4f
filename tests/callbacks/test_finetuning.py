"""BaseFinetuning / BackboneFinetuning: frozen modules, added param groups and their learning rates per epoch,
resume. Expected values were recorded with Lightning 2.6.6 on the same model (torch 2.13 CPU)."""

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import BackboneFinetuning, BaseFinetuning, ModelCheckpoint
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import quiet_trainer


class WithBackbone(L.LightningModule):
    """backbone = Linear(4, 4) + BatchNorm1d + ReLU, head = Linear(4, 1); SGD(lr 0.1) over the trainable params."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())
        self.head = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.head(self.backbone(x)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)


class GroupRecorder(L.Callback):
    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, pl_module):
        groups = trainer.optimizers[0].param_groups
        self.rows.append((trainer.current_epoch, [round(group["lr"], 8) for group in groups],
                          [len(group["params"]) for group in groups], pl_module.backbone[0].weight.requires_grad))


def _fit(tmp_path, max_epochs=5, ckpt_path=None, save=False, **options):
    torch.manual_seed(0)
    module, recorder = WithBackbone(), GroupRecorder()
    callbacks = [BackboneFinetuning(**options), recorder]
    if save:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, filename="{epoch}"))
    trainer = quiet_trainer(tmp_path, max_epochs=max_epochs, callbacks=callbacks)
    trainer.fit(module, DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4), ckpt_path=ckpt_path)
    return module, recorder.rows, callbacks[0]


def test_backbone_joins_at_its_epoch_and_its_lr_doubles_until_aligned(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        module, rows, callback = _fit(tmp_path, unfreeze_backbone_at_epoch=1, verbose=True, rounding=3)
    # Lightning 2.6.6: BatchNorm stays trainable (in the first group, 4 params); the Linear joins at epoch 1.
    assert rows == [(0, [0.1], [4], False), (1, [0.1, 0.01], [4, 2], True), (2, [0.1, 0.02], [4, 2], True),
                    (3, [0.1, 0.04], [4, 2], True), (4, [0.1, 0.08], [4, 2], True)]
    assert "Current lr: 0.1, Backbone lr: 0.01" in caplog.text and "Backbone lr: 0.08" in caplog.text
    metadata = callback.state_dict()["internal_optimizer_metadata"]
    assert [group["params"] for group in metadata[0]] == [
        ["backbone.1.weight", "backbone.1.bias", "head.weight", "head.bias"], ["backbone.0.weight", "backbone.0.bias"]]
    assert callback.state_dict()["previous_backbone_lr"] == pytest.approx(0.08)
    torch.testing.assert_close(module.backbone[0].weight.detach().flatten()[:3],
                               torch.tensor([-0.003821898251771927, 0.2692205309867859, -0.4103318154811859]),
                               rtol=1e-4, atol=1e-6)


def test_initial_lr_lambda_and_no_alignment(tmp_path):
    _, rows, _ = _fit(tmp_path, unfreeze_backbone_at_epoch=1, backbone_initial_lr=0.01, lambda_func=lambda e: 1.5,
                      should_align=False, backbone_initial_ratio_lr=0.5)
    assert [lrs for _, lrs, _, _ in rows] == [[0.1], [0.1, 0.01], [0.1, 0.015], [0.1, 0.0225], [0.1, 0.03375]]


def test_ratio_and_alignment_cap_the_backbone_lr(tmp_path):
    _, rows, _ = _fit(tmp_path, max_epochs=4, unfreeze_backbone_at_epoch=0, backbone_initial_ratio_lr=0.5,
                      lambda_func=lambda e: 1.5)
    assert [lrs for _, lrs, _, _ in rows] == [[0.1, 0.05], [0.1, 0.075], [0.1, 0.1], [0.1, 0.1]]


def test_train_bn_false_keeps_batchnorm_out_of_the_backbone_group(tmp_path):
    class NoBNInFirstGroup(WithBackbone):
        def configure_optimizers(self):
            return torch.optim.SGD(self.head.parameters(), lr=0.1)

    torch.manual_seed(0)
    recorder = GroupRecorder()
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[
        BackboneFinetuning(unfreeze_backbone_at_epoch=1, train_bn=False), recorder])
    trainer.fit(NoBNInFirstGroup(), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    assert [sizes for _, _, sizes, _ in recorder.rows] == [[2], [2, 2]]  # the BatchNorm's 2 params never join


def test_resume_rebuilds_the_param_groups_and_keeps_training_the_backbone(tmp_path):
    full, full_rows, _ = _fit(tmp_path / "full", unfreeze_backbone_at_epoch=1, save=True)
    resumed, rows, callback = _fit(tmp_path / "resumed", unfreeze_backbone_at_epoch=1,
                                   ckpt_path=tmp_path / "full" / "ckpts" / "epoch=2.ckpt")
    assert rows == full_rows[3:]  # the saved lr (0.02) was restored, then doubled: 0.04, 0.08
    assert callback.previous_backbone_lr == pytest.approx(0.08)
    # Lightning 2.6.6 leaves the backbone frozen after this resume (it trains only the head and BatchNorm);
    # fulmen keeps training it, so the resumed run ends where the uninterrupted one does.
    torch.testing.assert_close(resumed.backbone[0].weight, full.backbone[0].weight)
    torch.testing.assert_close(resumed.head.weight, full.head.weight)


def test_module_without_backbone_is_refused(tmp_path):
    class NoBackbone(WithBackbone):
        def __init__(self):
            super().__init__()
            del self.backbone

        def training_step(self, batch, batch_idx):
            return self.head(batch[0]).sum()

    class FreezeNothing(BackboneFinetuning):
        def freeze_before_training(self, pl_module):
            pass

    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[FreezeNothing()])
    with pytest.raises(MisconfigurationException, match="nn.Module `backbone` attribute"):
        trainer.fit(NoBackbone(), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))


def test_initial_denom_lr_warns_that_it_has_no_effect():
    with pytest.warns(UserWarning, match="initial_denom_lr=3.0.*no effect"):
        BackboneFinetuning(initial_denom_lr=3.0)


def test_static_helpers_as_lightning():
    seq = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    names = lambda modules: [type(module).__name__ for module in modules]  # noqa: E731
    assert names(BaseFinetuning.flatten_modules(seq)) == ["Linear", "Linear", "BatchNorm1d"]
    assert names(BaseFinetuning.flatten_modules(nn.ModuleDict({"a": seq}))) == ["Linear", "Linear", "BatchNorm1d"]
    assert names(BaseFinetuning.flatten_modules([seq[0], [seq[1]]])) == ["Linear", "Linear", "BatchNorm1d"]
    BaseFinetuning.freeze(seq, train_bn=False)
    assert [p.requires_grad for p in seq.parameters()] == [False] * 6 and not seq[1][1].track_running_stats
    BaseFinetuning.freeze(seq)
    assert [p.requires_grad for p in seq.parameters()] == [False] * 4 + [True] * 2 and seq[1][1].track_running_stats
    assert len(list(BaseFinetuning.filter_params(seq, train_bn=False, requires_grad=True))) == 0
    assert len(list(BaseFinetuning.filter_params(seq, requires_grad=False))) == 4
    BaseFinetuning.freeze_module(seq[1][1])
    assert not seq[1][1].weight.requires_grad and not seq[1][1].track_running_stats
    optimizer = torch.optim.SGD([seq[1][1].weight], lr=1.0)
    BaseFinetuning.make_trainable(seq)
    assert all(p.requires_grad for p in seq.parameters())
    BaseFinetuning.unfreeze_and_add_param_group(seq[0], optimizer)  # lr: first group's / initial_denom_lr
    BaseFinetuning.unfreeze_and_add_param_group(seq[1], optimizer, lr=0.3)  # the BN weight is already there
    assert [(len(g["params"]), g["lr"]) for g in optimizer.param_groups] == [(1, 1.0), (2, 0.1), (3, 0.3)]
    with pytest.warns(UserWarning, match="already exist within another group"):
        assert BaseFinetuning.filter_on_optimizer(optimizer, [seq[0].weight, nn.Parameter(torch.ones(1))]) != []


def test_custom_finetuning_callback_and_missing_overrides(tmp_path):
    class UnfreezeHeadAt1(BaseFinetuning):
        def freeze_before_training(self, pl_module):
            self.freeze(pl_module.backbone[0])

        def finetune_function(self, pl_module, epoch, optimizer):
            if epoch == 1:
                self.unfreeze_and_add_param_group(pl_module.backbone[0], optimizer, initial_denom_lr=4.0)

    torch.manual_seed(0)
    recorder = GroupRecorder()
    quiet_trainer(tmp_path, max_epochs=2, callbacks=[UnfreezeHeadAt1(), recorder]).fit(
        WithBackbone(), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    assert [lrs for _, lrs, _, _ in recorder.rows] == [[0.1], [0.1, 0.025]]

    with pytest.raises(NotImplementedError, match="freeze_before_training"):
        quiet_trainer(tmp_path, max_epochs=1, callbacks=[BaseFinetuning()]).fit(
            WithBackbone(), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
