"""Flags from the environment (`PL_TRAINER_*`) and barebones mode, as a user sees them."""


import pytest

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, WithDataHooks, make_loader


def test_environment_supplies_flags_not_passed(monkeypatch, tmp_path):
    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "3")
    monkeypatch.setenv("PL_TRAINER_LIMIT_TRAIN_BATCHES", "0.5")
    monkeypatch.setenv("PL_TRAINER_DEFAULT_ROOT_DIR", str(tmp_path))  # not a literal: kept as a string
    monkeypatch.setenv("PL_TRAINER_ENABLE_PROGRESS_BAR", "False")
    monkeypatch.setenv("PL_TRAINER_ACCUMULATE_GRAD_BATCHES", "")  # empty: ignored
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False)
    assert trainer.max_epochs == 3
    assert trainer.limit_train_batches == 0.5
    assert trainer.default_root_dir == str(tmp_path)
    assert trainer.progress_bar_callback is None
    assert trainer.accumulate_grad_batches == 1
    module = TinyModule()
    trainer.fit(module, make_loader(64))
    assert trainer.global_step == 3 * 4  # half of 8 batches, three epochs


def test_passed_flags_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "3")
    assert L.Trainer(max_epochs=1, logger=False).max_epochs == 1


def test_a_subclass_reads_variables_named_after_itself(monkeypatch):
    class MyTrainer(L.Trainer):
        pass

    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "3")
    monkeypatch.setenv("PL_MYTRAINER_MAX_EPOCHS", "5")
    assert MyTrainer(logger=False).max_epochs == 5


@pytest.mark.parametrize("flag", [dict(enable_checkpointing=True), dict(logger=True), dict(enable_progress_bar=True),
                                  dict(log_every_n_steps=1), dict(enable_model_summary=True),
                                  dict(num_sanity_val_steps=2), dict(fast_dev_run=True), dict(detect_anomaly=True)])
def test_barebones_refuses_features_that_cost_speed(flag):
    (name, value), = flag.items()
    with pytest.raises(ValueError, match=rf"barebones=True, {name}={value!r}.*remove `{name}`"):
        L.Trainer(barebones=True, **flag)


def test_barebones_turns_off_step_logging_and_the_sanity_check(tmp_path):
    module = WithDataHooks()
    trainer = L.Trainer(default_root_dir=tmp_path, barebones=True, max_epochs=1)
    assert trainer.barebones and trainer.log_every_n_steps == 0 and trainer.num_sanity_val_steps == 0
    trainer.fit(module)
    assert module.calls["validation_step"] == 2  # one validation at the epoch end, no sanity check before it
    assert trainer.global_step == 2


def test_barebones_refuses_self_log(tmp_path):
    class Logs(TinyModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

    trainer = L.Trainer(default_root_dir=tmp_path, barebones=True, max_epochs=1)
    with pytest.raises(MisconfigurationException, match=r"self.log\('loss', ...\)` but `Trainer\(barebones=True\)"):
        trainer.fit(Logs(), make_loader(16))


def test_trainer_reports_its_loops_and_run_settings(tmp_path):
    module = WithDataHooks()
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, max_epochs=1,
                        val_check_interval=0.5, overfit_batches=0, reload_dataloaders_every_n_epochs=2)
    assert trainer.val_check_batch is None and trainer.validate_loop is None and not trainer.enable_validation
    trainer.fit(module)
    assert trainer.val_check_batch == 1  # half of the 2 training batches
    assert trainer.enable_validation
    assert trainer.reload_dataloaders_every_n_epochs == 2 and trainer.overfit_batches == 0
    assert trainer.scaler is None and trainer.distributed_sampler_kwargs is None
    trainer.validate(module, verbose=False)
    assert trainer.validate_loop.max_batches == [2]
    assert trainer.validate_loop.dataloaders is trainer.val_dataloaders
    assert trainer.test_loop is None
    trainer.test(module, verbose=False)
    assert trainer.test_loop.max_batches == [2] and trainer.validate_loop is None


def test_enable_validation_is_off_without_a_validation_step_or_batches(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, max_epochs=1,
                        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(WithDataHooks())
    assert not trainer.enable_validation
