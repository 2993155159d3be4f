"""ModelPruning: zeros per epoch, lottery ticket reset, permanent pruning in the module and in checkpoints, errors.
Expected values were recorded with Lightning 2.6.6 on the same model, data and seed (torch 2.13 CPU)."""

import logging

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import ModelPruning
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import quiet_trainer


class TwoLayers(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(6, 6)
        self.l2 = torch.nn.Linear(6, 2)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.l2(torch.relu(self.l1(x))).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Zeros(L.Callback):
    """Per epoch end (after pruning): zeros in l1.weight, l1.bias, l2.weight, l2.bias; pruned?; sum of l1.weight."""

    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, m):
        zeros = [int((tensor == 0).sum()) for tensor in (m.l1.weight, m.l1.bias, m.l2.weight, m.l2.bias)]
        total = round(float(m.l1.weight.detach().sum()), 4)
        self.rows.append((trainer.current_epoch, *zeros, hasattr(m.l1, "weight_orig"), total))


def _fit(tmp_path, max_epochs=3, val=False, **options):
    torch.manual_seed(0)
    module, zeros = TwoLayers(), Zeros()
    trainer = quiet_trainer(tmp_path, max_epochs=max_epochs, callbacks=[ModelPruning(**options), zeros],
                            num_sanity_val_steps=0)
    loader = DataLoader(TensorDataset(torch.randn(8, 6)), batch_size=4)
    trainer.fit(module, loader, loader if val else None)
    return trainer, module, zeros.rows


def _sums(module):
    return round(float(module.l1.weight.sum()), 4), round(float(module.l2.weight.sum()), 4)


GLOBAL_L1 = [(0, 13, 1, 3, 0, True, -1.7094), (1, 19, 4, 6, 0, True, -1.0041), (2, 22, 5, 9, 1, True, -1.1698)]


def test_global_l1_pruning_with_lottery_ticket_as_lightning(tmp_path):
    trainer, module, rows = _fit(tmp_path, pruning_fn="l1_unstructured", amount=0.3)
    assert rows == GLOBAL_L1
    # made permanent when training ends: plain parameters again, no masks
    assert [name for name, _ in module.named_parameters()] == ["l1.weight", "l1.bias", "l2.weight", "l2.bias"]
    assert list(module.named_buffers()) == [] and _sums(module) == (-1.1698, -0.3204)
    trainer.save_checkpoint(tmp_path / "pruned.ckpt")
    state = torch.load(tmp_path / "pruned.ckpt", weights_only=False)["state_dict"]
    assert sorted(state) == ["l1.bias", "l1.weight", "l2.bias", "l2.weight"]


@pytest.mark.parametrize(("options", "rows", "sums"), [
    (dict(use_lottery_ticket_hypothesis=False),
     [(0, 13, 1, 3, 0, True, -1.7094), (1, 19, 3, 7, 0, True, -1.0145), (2, 22, 5, 9, 1, True, -1.1721)],
     (-1.1721, -0.3281)),
    (dict(use_lottery_ticket_hypothesis=lambda epoch: epoch == 0), GLOBAL_L1, (-1.1698, -0.3204)),
    (dict(pruning_fn=torch_prune.L1Unstructured), GLOBAL_L1, (-1.1698, -0.3204)),
    (dict(parameters_to_prune=None), GLOBAL_L1, (-1.1698, -0.3204)),
    (dict(use_global_unstructured=False, parameter_names=["weight"]),
     [(0, 11, 0, 4, 0, True, -1.7018), (1, 19, 0, 6, 0, True, -1.0067), (2, 24, 0, 8, 0, True, -0.6722)],
     (-0.6722, -0.08)),
    (dict(pruning_fn="ln_structured", amount=0.5, use_global_unstructured=False, pruning_dim=0, pruning_norm=1,
          parameter_names=["weight"]),
     [(0, 18, 0, 6, 0, True, -1.1112), (1, 30, 0, 6, 0, True, -0.9302), (2, 30, 0, 6, 0, True, -0.9327)],
     (-0.9327, -0.3567)),
    (dict(apply_pruning=False),
     [(0, 0, 0, 0, 0, False, -1.8555), (1, 0, 0, 0, 0, False, -1.9101), (2, 0, 0, 0, 0, False, -1.9505)],
     (-1.9505, 0.3791)),
])
def test_pruning_options_as_lightning(tmp_path, options, rows, sums):
    options = {"pruning_fn": "l1_unstructured", "amount": 0.3, **options}
    _, module, got = _fit(tmp_path, **options)
    assert got == rows and _sums(module) == sums


def test_pruning_after_validation_instead_of_the_training_epoch_end(tmp_path):
    _, _, rows = _fit(tmp_path, val=True, pruning_fn="l1_unstructured", amount=0.3, prune_on_train_epoch_end=False)
    assert rows == GLOBAL_L1  # validation ends before the training epoch does
    _, _, rows = _fit(tmp_path, pruning_fn="l1_unstructured", amount=0.3, prune_on_train_epoch_end=False)
    assert [row[1] for row in rows] == [0, 0, 0]  # no validation: never pruned


def test_scheduled_amount_kept_masks_and_verbose(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        trainer, module, rows = _fit(tmp_path, pruning_fn="l1_unstructured", amount=lambda e: 0.5 if e == 1 else 0,
                                     apply_pruning=lambda e: e > 0, make_pruning_permanent=False, verbose=1)
    assert rows == [(0, 0, 0, 0, 0, False, -1.8555), (1, 19, 3, 6, 0, True, -1.0145),
                    (2, 19, 3, 6, 0, True, -0.995)]
    assert "Applied `L1Unstructured`. Pruned: 0/56 (0.00%) -> 28/56 (50.00%)" in caplog.text
    assert [name for name, _ in module.named_parameters()] == [
        "l1.weight_orig", "l1.bias_orig", "l2.weight_orig", "l2.bias_orig"]
    trainer.save_checkpoint(tmp_path / "masked.ckpt")
    state = torch.load(tmp_path / "masked.ckpt", weights_only=False)["state_dict"]
    assert sorted(state) == ["l1.bias_mask", "l1.bias_orig", "l1.weight_mask", "l1.weight_orig", "l2.bias_mask",
                             "l2.bias_orig", "l2.weight_mask", "l2.weight_orig"]


def test_checkpoints_during_training_hold_the_pruned_weights(tmp_path):
    saved = {}

    class SaveAfterPruning(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")
                # after the lottery ticket reset; `l1.weight` itself is recomputed at the next forward
                saved["weight"] = (pl_module.l1.weight_orig * pl_module.l1.weight_mask).detach().clone()

    torch.manual_seed(0)
    callback = ModelPruning("l1_unstructured", amount=0.3)
    quiet_trainer(tmp_path, max_epochs=2, callbacks=[callback, SaveAfterPruning()]).fit(
        TwoLayers(), DataLoader(TensorDataset(torch.randn(8, 6)), batch_size=4))
    state = torch.load(tmp_path / "mid.ckpt", weights_only=False)["state_dict"]
    assert sorted(state) == ["l1.bias", "l1.weight", "l2.bias", "l2.weight"]
    torch.testing.assert_close(state["l1.weight"], saved["weight"])
    assert int((state["l1.weight"] == 0).sum()) == 13


def test_per_parameter_verbose_logging(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        _fit(tmp_path, max_epochs=1, pruning_fn="random_unstructured", amount=2, use_global_unstructured=False,
             verbose=2)
    assert "Applied `random_unstructured`. Pruned: 0/56 (0.00%) -> 8/56 (14.29%)" in caplog.text
    assert ("Applied `random_unstructured` to `Linear(in_features=6, out_features=2, bias=True).bias` with amount=2. "
            "Pruned: 0 (0.00%) -> 2 (100.00%)") in caplog.text


def test_resampled_lottery_ticket_draws_new_initial_values(tmp_path):
    _, module, rows = _fit(tmp_path, pruning_fn="l1_unstructured", amount=0.3, resample_parameters=True)
    # Lightning 2.6.6 on the same seed (reset_parameters draws from the global RNG)
    assert rows == [(0, 13, 1, 3, 0, True, -1.7094), (1, 20, 3, 4, 2, True, -0.1088), (2, 23, 4, 8, 2, True, -0.0775)]
    assert _sums(module) == (-1.0243, -0.3685)


@pytest.mark.parametrize(("options", "match"), [
    (dict(pruning_fn="foo"), "isn't available in PyTorch's built-in functions"),
    (dict(pruning_fn="ln_structured"), "the `pruning_dim` should be provided"),
    (dict(pruning_fn="ln_structured", pruning_dim=0), "the `pruning_norm` should be provided"),
    (dict(pruning_fn="random_structured", pruning_dim=0), 'Only the "unstructured" PRUNING_TYPE'),
    (dict(pruning_fn=torch_prune.l1_unstructured), "pass the class, not an instance"),
    (dict(pruning_fn=torch_prune.L1Unstructured, use_global_unstructured=False), "only supported with"),
    (dict(pruning_fn="l1_unstructured", amount="x"), "`amount` should be provided"),
    (dict(pruning_fn="l1_unstructured", verbose=3), r"`verbose` must be any of \(0, 1, 2\)"),
    (dict(pruning_fn="l1_unstructured", parameter_names=["w"]), "name: w isn't in"),
])
def test_invalid_arguments_are_refused(options, match):
    with pytest.raises(MisconfigurationException, match=match):
        ModelPruning(**options)


def test_names_are_case_insensitive_and_unused_dim_or_norm_warns():
    assert ModelPruning("L1_Unstructured").pruning_fn is torch_prune.L1Unstructured
    with pytest.warns(UserWarning, match="pruning_norm=...\\)` has no effect"):
        ModelPruning("random_structured", pruning_dim=0, use_global_unstructured=False, pruning_norm=3)


@pytest.mark.parametrize(("pairs", "match"), [
    (lambda m: [(torch.nn.Linear(2, 2), "weight")], "don't exist in the model. Found missing modules"),
    (lambda m: [(m.l1, "kernel")], r"missing parameters: \['kernel'\]"),
    (lambda m: [("l1", "weight")], "should either be list of tuple with 2 elements"),
])
def test_parameters_to_prune_must_belong_to_the_model(tmp_path, pairs, match):
    module = TwoLayers()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[ModelPruning("l1_unstructured",
                                                                            parameters_to_prune=pairs(module))])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(module, DataLoader(TensorDataset(torch.randn(8, 6)), batch_size=4))


def test_only_the_given_parameters_are_pruned_and_filter_can_narrow_them(tmp_path):
    class OnlyL2(ModelPruning):
        def filter_parameters_to_prune(self, parameters_to_prune=()):
            return [(module, name) for module, name in parameters_to_prune if module.out_features == 2]

    torch.manual_seed(0)
    module, zeros = TwoLayers(), Zeros()
    quiet_trainer(tmp_path, max_epochs=1, callbacks=[OnlyL2("l1_unstructured", amount=0.5), zeros]).fit(
        module, DataLoader(TensorDataset(torch.randn(8, 6)), batch_size=4))
    assert zeros.rows[0][1:5] == (0, 0, 6, 1)  # 7 of l2's 14 values
