"""Probes for the constructor parameters of GradientAccumulationScheduler, BackboneFinetuning, ModelPruning and
SpikeDetection (used by `tests/test_signatures_components.py`): each passes a non-default value and checks what it
changes, or the clear error it raises."""

import json
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import BackboneFinetuning, GradientAccumulationScheduler, ModelPruning, SpikeDetection
from fulmen.callbacks.spike import TrainingSpikeException
from helpers.signature_probes import raises
from helpers.tiny import quiet_trainer


def _loader(n, features):
    return DataLoader(TensorDataset(torch.randn(n, features)), batch_size=n // 2 if n > 4 else 1)


# -- GradientAccumulationScheduler -----------------------------------------------------------------------------


class _Linear(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _scheduled_steps(tmp):
    trainer = quiet_trainer(tmp, max_epochs=2, callbacks=[GradientAccumulationScheduler({1: 3})])
    trainer.fit(_Linear(), DataLoader(TensorDataset(torch.randn(6, 4)), batch_size=1))
    return trainer.global_step == 6 + 2  # epoch 0 steps every batch, epoch 1 every 3rd


GRADIENT_ACCUMULATION_SCHEDULER = {"scheduling": _scheduled_steps}


# -- BackboneFinetuning ----------------------------------------------------------------------------------------


class _WithBackbone(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.head(self.backbone(batch[0])).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.head.parameters(), lr=0.1)


def _backbone_groups(tmp, max_epochs=3, **options):
    """Fit 3 epochs; return per epoch the (rounded) lrs and sizes of the param groups."""
    rows = []
    recorder = L.Callback()
    recorder.on_train_epoch_end = lambda trainer, module: rows.append(
        [(round(group["lr"], 6), len(group["params"])) for group in trainer.optimizers[0].param_groups])
    trainer = quiet_trainer(tmp, max_epochs=max_epochs, callbacks=[BackboneFinetuning(**options), recorder])
    trainer.fit(_WithBackbone(), _loader(8, 4))
    return rows


def _logged(logger_name, run):
    """The messages `run()` logs to `logger_name`."""
    logger = logging.getLogger(logger_name)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        run()
    finally:
        logger.removeHandler(handler)
    return [record.getMessage() for record in records]


def _verbose_backbone(tmp, **options):
    return _logged("fulmen.callbacks.finetuning", lambda: _backbone_groups(
        tmp, max_epochs=2, unfreeze_backbone_at_epoch=1, verbose=True, **options))


def _denom_warns(tmp):
    with pytest.warns(UserWarning, match="initial_denom_lr=2.0.*no effect"):
        BackboneFinetuning(initial_denom_lr=2.0)
    return True


BACKBONE_FINETUNING = {
    "unfreeze_backbone_at_epoch": lambda tmp: [len(row) for row in _backbone_groups(tmp, unfreeze_backbone_at_epoch=2)]
    == [1, 1, 2],
    "lambda_func": lambda tmp: [row[-1][0] for row in _backbone_groups(tmp, unfreeze_backbone_at_epoch=0,
                                                                       lambda_func=lambda epoch: 3.0)]
    == [0.01, 0.03, 0.09],
    "backbone_initial_ratio_lr": lambda tmp: _backbone_groups(tmp, unfreeze_backbone_at_epoch=0,
                                                              backbone_initial_ratio_lr=0.5)[0][1][0] == 0.05,
    "backbone_initial_lr": lambda tmp: _backbone_groups(tmp, unfreeze_backbone_at_epoch=0,
                                                        backbone_initial_lr=0.002)[0][1][0] == 0.002,
    "should_align": lambda tmp: [row[-1][0] for row in _backbone_groups(tmp, unfreeze_backbone_at_epoch=0,
                                                                        backbone_initial_ratio_lr=0.5,
                                                                        should_align=False)] == [0.05, 0.1, 0.2],
    "initial_denom_lr": _denom_warns,
    "train_bn": lambda tmp: _backbone_groups(tmp, unfreeze_backbone_at_epoch=0, train_bn=False)[0][1][1] == 2,
    "verbose": lambda tmp: _verbose_backbone(tmp) == ["Current lr: 0.1, Backbone lr: 0.01"],
    "rounding": lambda tmp: _verbose_backbone(tmp, backbone_initial_lr=0.123456, rounding=2)
    == ["Current lr: 0.1, Backbone lr: 0.12"],
}


# -- ModelPruning -------------------------------------------------------------------------------------------------


class _TwoLayers(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(6, 6)
        self.l2 = nn.Linear(6, 2)

    def training_step(self, batch, batch_idx):
        return self.l2(torch.relu(self.l1(batch[0]))).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _pruned(tmp, max_epochs=1, val=False, module=None, **options):
    """Fit with ModelPruning; return the module and the zeros in (l1.weight, l1.bias, l2.weight, l2.bias) per epoch."""
    torch.manual_seed(0)
    module = module or _TwoLayers()
    rows = []
    recorder = L.Callback()
    recorder.on_train_epoch_end = lambda trainer, m: rows.append(tuple(
        int((tensor == 0).sum()) for tensor in (m.l1.weight, m.l1.bias, m.l2.weight, m.l2.bias)))
    options.setdefault("pruning_fn", "l1_unstructured")
    trainer = quiet_trainer(tmp, max_epochs=max_epochs, callbacks=[ModelPruning(**options), recorder],
                            num_sanity_val_steps=0)
    loader = _loader(8, 6)
    trainer.fit(module, loader, loader if val else None)
    return module, rows


def _lottery_resets(tmp, **options):
    """Whether a surviving l2 weight equals its initial value after pruning (the lottery ticket reset)."""
    torch.manual_seed(0)
    module = _TwoLayers()
    initial = module.l2.weight.detach().clone()
    module, _ = _pruned(tmp, module=module, amount=0.3, make_pruning_permanent=False, **options)
    kept = module.l2.weight_mask.bool()
    return torch.equal(module.l2.weight_orig[kept].detach(), initial[kept])


def _pruning_verbose(tmp):
    return _logged("fulmen.callbacks.pruning", lambda: _pruned(tmp, amount=0.5, verbose=1)) == [
        "Applied `L1Unstructured`. Pruned: 0/56 (0.00%) -> 28/56 (50.00%)"]


MODEL_PRUNING = {
    "pruning_fn": lambda tmp: ModelPruning("random_unstructured").pruning_fn.__name__ == "RandomUnstructured"
    and sum(_pruned(tmp, pruning_fn="random_unstructured", amount=0.5)[1][0]) == 28,  # half of the 56 values
    "parameters_to_prune": lambda tmp: (lambda m: _pruned(tmp, module=m, parameters_to_prune=[(m.l2, "weight")])[1]
                                        == [(0, 0, 6, 0)])(_TwoLayers()),
    "parameter_names": lambda tmp: _pruned(tmp, parameter_names=["bias"], amount=0.5)[1] == [(0, 4, 0, 0)],
    "use_global_unstructured": lambda tmp: _pruned(tmp, use_global_unstructured=False, amount=0.5)[1]
    == [(18, 3, 6, 1)],
    "amount": lambda tmp: sum(_pruned(tmp, amount=10)[1][0]) == 10,
    "apply_pruning": lambda tmp: _pruned(tmp, apply_pruning=False)[1] == [(0, 0, 0, 0)],
    "make_pruning_permanent": lambda tmp: hasattr(_pruned(tmp, make_pruning_permanent=False)[0].l1, "weight_mask"),
    "use_lottery_ticket_hypothesis": lambda tmp: _lottery_resets(tmp) and not _lottery_resets(
        tmp, use_lottery_ticket_hypothesis=False),
    "resample_parameters": lambda tmp: not _lottery_resets(tmp, resample_parameters=True),
    "pruning_dim": lambda tmp: _pruned(tmp, pruning_fn="ln_structured", pruning_dim=1, pruning_norm=1, amount=0.5,
                                       use_global_unstructured=False, parameter_names=["weight"])[1] == [(18, 0, 6, 0)],
    "pruning_norm": lambda tmp: raises(Exception, "pruning_norm", lambda: ModelPruning(
        "ln_structured", pruning_dim=0, use_global_unstructured=False)) and _pruned(
        tmp, pruning_fn="ln_structured", pruning_dim=0, pruning_norm=2, amount=0.5, use_global_unstructured=False,
        parameter_names=["weight"])[1] == [(18, 0, 6, 0)],
    "verbose": _pruning_verbose,
    "prune_on_train_epoch_end": lambda tmp: _pruned(tmp, prune_on_train_epoch_end=False)[1] == [(0, 0, 0, 0)]
    and _pruned(tmp, prune_on_train_epoch_end=False, val=True)[1] != [(0, 0, 0, 0)],
}


# -- SpikeDetection -------------------------------------------------------------------------------------------------


class _Scripted(L.LightningModule):
    def __init__(self, losses):
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.losses = losses

    def training_step(self, batch, batch_idx):
        return self.layer.weight.sum() * 0 + self.losses[batch_idx]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _spike_at(tmp, losses, **options):
    """The batch index whose loss was detected as a spike, or None."""
    trainer = quiet_trainer(tmp, max_epochs=1, callbacks=[SpikeDetection(**options)])
    try:
        trainer.fit(_Scripted(losses), DataLoader(TensorDataset(torch.zeros(len(losses), 1)), batch_size=1))
    except TrainingSpikeException as error:
        return int(str(error).rsplit(" ", 1)[1])
    return None


_STEADY = [1.0, 1.0, 1.0, 0.9]
SPIKE_DETECTION = {
    "mode": lambda tmp: _spike_at(tmp, [1.0, 1.0, 0.1, 1.0], rtol=0.5) is None  # a drop is no spike when minimizing
    and _spike_at(tmp, [1.0, 1.0, 0.1, 1.0], mode="max", rtol=0.5) == 2,
    "window": lambda tmp: _spike_at(tmp, [1.0] * 5 + [2.0] * 4 + [5.0]) == 9  # mean of 9 losses: 1.44
    and _spike_at(tmp, [1.0] * 5 + [2.0] * 4 + [5.0], window=3) is None,  # mean of the last 3: 2.0
    "warmup": lambda tmp: _spike_at(tmp, [1.0, 5.0, 1.0], warmup=2) is None and _spike_at(tmp, [1.0, 5.0, 1.0]) == 1,
    "atol": lambda tmp: _spike_at(tmp, _STEADY + [3.5], atol=3.0) is None and _spike_at(tmp, _STEADY + [3.5]) == 4,
    "rtol": lambda tmp: _spike_at(tmp, _STEADY + [2.9], rtol=1.0) == 4 and _spike_at(tmp, _STEADY + [2.9]) is None,
    "exclude_batches_path": lambda tmp: _spike_at(tmp, _STEADY + [3.5], exclude_batches_path=tmp / "skip.json") == 4
    and json.loads((tmp / "skip.json").read_text()) == [3, 4],
    "finite_only": lambda tmp: _spike_at(tmp, [1.0, 1.0, float("nan"), 1.0], finite_only=False) is None
    and _spike_at(tmp, [1.0, 1.0, float("nan"), 1.0]) == 2,
}
