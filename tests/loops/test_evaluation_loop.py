"""Validation, sanity check and test: batch limits, eval/inference mode, results and the printed table."""

import pytest
import torch
from torch.nn import functional as F

from helpers.tiny import RecordingCallback, TinyModule, make_loader, quiet_trainer


class RecordsEval(TinyModule):
    """Records, per validation/test batch, the stage flags, modes and the dataloader_idx it received."""

    def __init__(self, log_val=True):
        super().__init__(log_val=log_val)
        self.val_batches = []
        self.test_batches = []

    def validation_step(self, batch, batch_idx, dataloader_idx=None):
        trainer = self.trainer
        self.val_batches.append(dict(
            batch_idx=batch_idx, dataloader_idx=dataloader_idx, sanity=trainer.sanity_checking,
            training=self.training, grad=torch.is_grad_enabled(), inference=torch.is_inference_mode_enabled(),
        ))
        self.calls["validation_step"] += 1
        loss = self.loss(batch)
        if self.log_val:
            self.log("val_loss", loss)
        return loss

    def test_step(self, batch, batch_idx, dataloader_idx=None):
        self.test_batches.append(dict(batch_idx=batch_idx, dataloader_idx=dataloader_idx, training=self.training))
        return super().test_step(batch, batch_idx)


def _mean_loss(module, loader):
    with torch.no_grad():
        return torch.stack([F.cross_entropy(module(x), y) for x, y in loader]).mean().item()


# -- batch limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (0.5, 2), (1.0, 4), (10, 4)])
def test_limit_val_batches_counts_validation_steps_in_fit(tmp_path, limit, expected):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0, limit_val_batches=limit)
    trainer.fit(module, make_loader(16), make_loader(32))
    assert module.calls["validation_step"] == 2 * expected
    assert trainer.num_val_batches == [expected]


def test_limit_val_batches_zero_turns_validation_off(tmp_path):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(module, make_loader(16), make_loader(32))
    assert module.calls["validation_step"] == 0
    assert module.calls["training_step"] == 4


@pytest.mark.parametrize(("limit", "expected"), [
    (3, 3), (0.25, 2), (1.0, 8),
    # a float with a whole value above 1 is a number of batches
    (2.0, 2),
])
def test_limit_test_batches_counts_test_steps(tmp_path, limit, expected):
    module = TinyModule()
    trainer = quiet_trainer(tmp_path, limit_test_batches=limit)
    trainer.test(module, make_loader(64), verbose=False)
    assert module.calls["test_step"] == expected
    assert trainer.num_test_batches == [expected]


def test_limit_val_batches_applies_to_validate(tmp_path):
    module = TinyModule()
    quiet_trainer(tmp_path, limit_val_batches=3).validate(module, make_loader(64), verbose=False)
    assert module.calls["validation_step"] == 3


# -- sanity check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "expected"), [(0, 0), (2, 2), (-1, 5)])
def test_num_sanity_val_steps(tmp_path, steps, expected):
    module = RecordsEval()
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=steps)
    trainer.fit(module, make_loader(16), make_loader(40))
    sanity = [b for b in module.val_batches if b["sanity"]]
    assert len(sanity) == expected
    assert [b["batch_idx"] for b in sanity] == list(range(expected))
    # the real validation at the end of the epoch still sees every batch
    assert len(module.val_batches) - expected == 5


def test_sanity_check_default_runs_two_batches_per_val_dataloader(tmp_path):
    module = RecordsEval()
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=0)
    trainer.fit(module, make_loader(16), [make_loader(40), make_loader(40, seed=5)])
    sanity = [(b["dataloader_idx"], b["batch_idx"]) for b in module.val_batches if b["sanity"]]
    assert sanity == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_sanity_check_does_not_leave_metrics_or_advance_counters(tmp_path):
    recorder = RecordingCallback()
    module = RecordsEval()
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=0, callbacks=[recorder])
    trainer.fit(module, make_loader(16), make_loader(32))
    assert recorder.count("on_sanity_check_start") == 1
    assert trainer.global_step == 0
    assert "val_loss" not in trainer.callback_metrics


def test_no_sanity_check_for_validate(tmp_path):
    module = RecordsEval()
    quiet_trainer(tmp_path, num_sanity_val_steps=2).validate(module, make_loader(32), verbose=False)
    assert [b["sanity"] for b in module.val_batches] == [False] * 4


# -- modes ----------------------------------------------------------------------------------------------


def test_inference_mode_true_in_validation_step(tmp_path):
    module = RecordsEval()
    quiet_trainer(tmp_path, inference_mode=True).validate(module, make_loader(16), verbose=False)
    assert all(b["inference"] and not b["grad"] for b in module.val_batches)


def test_inference_mode_false_uses_no_grad(tmp_path):
    module = RecordsEval()
    quiet_trainer(tmp_path, inference_mode=False).validate(module, make_loader(16), verbose=False)
    assert module.val_batches
    assert all(not b["inference"] and not b["grad"] for b in module.val_batches)


def test_validation_in_fit_runs_in_eval_mode(tmp_path):
    module = RecordsEval()
    quiet_trainer(tmp_path, max_epochs=2).fit(module, make_loader(16), make_loader(16))
    assert all(not b["training"] and not b["grad"] for b in module.val_batches)
    assert module.training


@pytest.mark.parametrize("entry", ["validate", "test"])
def test_eval_entry_points_restore_train_mode_and_grad(tmp_path, entry):
    module = RecordsEval()
    module.train()
    getattr(quiet_trainer(tmp_path), entry)(module, make_loader(16), verbose=False)
    batches = module.val_batches if entry == "validate" else module.test_batches
    assert len(batches) == 2 and not any(b["training"] for b in batches)
    assert module.training and module.layer.training
    assert torch.is_grad_enabled()


def test_eval_keeps_a_module_in_eval_mode_in_eval_mode(tmp_path):
    module = RecordsEval()
    module.eval()
    quiet_trainer(tmp_path).validate(module, make_loader(16), verbose=False)
    assert not module.training


def test_frozen_submodule_stays_in_eval_mode_after_validate(tmp_path):
    module = RecordsEval()
    module.frozen = torch.nn.Dropout(0.5)
    module.frozen.eval()
    quiet_trainer(tmp_path).validate(module, make_loader(16), verbose=False)
    assert module.training and module.layer.training
    assert not module.frozen.training


# -- results --------------------------------------------------------------------------------------------


def test_validate_returns_one_dict_of_floats(tmp_path):
    module = RecordsEval()
    loader = make_loader(32)
    results = quiet_trainer(tmp_path).validate(module, loader, verbose=False)
    assert isinstance(results, list) and len(results) == 1
    assert set(results[0]) == {"val_loss"}
    assert isinstance(results[0]["val_loss"], float)
    assert results[0]["val_loss"] == pytest.approx(_mean_loss(module, loader), rel=1e-6)


def test_test_returns_one_dict_of_floats(tmp_path):
    module = TinyModule(log_val=True)
    loader = make_loader(32)
    results = quiet_trainer(tmp_path).test(module, loader, verbose=False)
    assert list(results[0]) == ["test_loss"]
    assert results[0]["test_loss"] == pytest.approx(_mean_loss(module, loader), rel=1e-6)


def test_test_without_logging_returns_an_empty_dict(tmp_path):
    results = quiet_trainer(tmp_path).test(TinyModule(), make_loader(16), verbose=False)
    assert results == [{}]


def test_two_val_dataloaders_get_suffixed_keys_and_dataloader_idx(tmp_path):
    module = RecordsEval()
    first, second = make_loader(16), make_loader(24, seed=7)
    results = quiet_trainer(tmp_path).validate(module, [first, second], verbose=False)
    assert [(b["dataloader_idx"], b["batch_idx"]) for b in module.val_batches] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert len(results) == 2
    assert set(results[0]) == {"val_loss/dataloader_idx_0"}
    assert set(results[1]) == {"val_loss/dataloader_idx_1"}
    assert results[0]["val_loss/dataloader_idx_0"] == pytest.approx(_mean_loss(module, first), rel=1e-6)
    assert results[1]["val_loss/dataloader_idx_1"] == pytest.approx(_mean_loss(module, second), rel=1e-6)


def test_single_val_dataloader_does_not_pass_dataloader_idx(tmp_path):
    module = RecordsEval()
    quiet_trainer(tmp_path).validate(module, make_loader(16), verbose=False)
    assert [b["dataloader_idx"] for b in module.val_batches] == [None, None]


def test_two_test_dataloaders_pass_dataloader_idx(tmp_path):
    module = RecordsEval()
    results = quiet_trainer(tmp_path).test(module, [make_loader(8), make_loader(16)], verbose=False)
    assert [(b["dataloader_idx"], b["batch_idx"]) for b in module.test_batches] == [(0, 0), (1, 0), (1, 1)]
    assert [list(r) for r in results] == [["test_loss/dataloader_idx_0"], ["test_loss/dataloader_idx_1"]]


def test_validation_metrics_reach_callback_metrics_during_fit(tmp_path):
    module = RecordsEval()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, make_loader(16), make_loader(16))
    assert "val_loss" in trainer.callback_metrics
    assert trainer.callback_metrics["val_loss"].ndim == 0


def test_validate_prints_a_results_table_when_verbose(tmp_path, capsys):
    quiet_trainer(tmp_path).validate(RecordsEval(), make_loader(16), verbose=True)
    out = capsys.readouterr().out
    assert "Validate metric" in out
    assert "DataLoader 0" in out
    assert "val_loss" in out


def test_test_table_has_a_column_per_dataloader(tmp_path, capsys):
    quiet_trainer(tmp_path).test(RecordsEval(), [make_loader(8), make_loader(8)])
    out = capsys.readouterr().out
    assert "Test metric" in out
    assert "DataLoader 0" in out and "DataLoader 1" in out
    assert "test_loss" in out


@pytest.mark.parametrize("entry", ["validate", "test"])
def test_nothing_printed_when_not_verbose(tmp_path, capsys, entry):
    getattr(quiet_trainer(tmp_path), entry)(TinyModule(log_val=True), make_loader(16), verbose=False)
    assert capsys.readouterr().out == ""


def test_validate_uses_the_module_val_dataloader(tmp_path):
    class WithLoader(RecordsEval):
        def val_dataloader(self):
            return make_loader(24)

    module = WithLoader()
    results = quiet_trainer(tmp_path).validate(module, verbose=False)
    assert len(module.val_batches) == 3
    assert "val_loss" in results[0]


def test_validate_after_fit_with_the_same_trainer(tmp_path):
    module = RecordsEval()
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(module, make_loader(16))
    results = trainer.validate(module, make_loader(16), verbose=False)
    assert len(module.val_batches) == 2
    assert trainer.state.fn == "validate" and trainer.global_step == 2
    assert results[0]["val_loss"] == pytest.approx(_mean_loss(module, make_loader(16)), rel=1e-6)


def test_validation_inside_fit_runs_under_no_grad_not_inference_mode(tmp_path):
    """Lightning's quirk: only validate/test use inference mode; fit's validation uses no_grad."""
    import torch

    import fulmen as L
    from helpers.tiny import WithDataHooks

    class Seen(WithDataHooks):
        def validation_step(self, batch, batch_idx):
            self.calls[(self.trainer.state.fn, torch.is_inference_mode_enabled(), torch.is_grad_enabled())] += 1
            return super().validation_step(batch, batch_idx)

    module = Seen()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module)
    trainer.validate(module, verbose=False)
    assert module.calls[("fit", False, False)] == 4  # sanity check (2) + epoch end (2)
    assert module.calls[("validate", True, False)] == 2
