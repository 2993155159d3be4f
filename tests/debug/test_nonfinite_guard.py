"""`Trainer(on_nonfinite=...)`: "warn" reports NaN/inf values fulmen reads anyway; "raise", "skip" and "stop" check
every optimizer step and act on the first bad one (Lightning 2.6.6 has no such flag and trains on to NaN weights)."""

import warnings

import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback
from fulmen.loggers import CSVLogger
from helpers.nonfinite_modules import ManualNaN, NaNAt
from helpers.tiny import make_loader


def _trainer(tmp_path, **flags):
    defaults = dict(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    defaults.update(flags)
    return L.Trainer(**defaults)


def _fit(tmp_path, module, ckpt_path=None, shuffle=False, **flags):
    trainer = _trainer(tmp_path, **flags)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, make_loader(64, batch_size=8, shuffle=shuffle), ckpt_path=ckpt_path)
    return trainer, [str(w.message) for w in caught if w.category.__name__ == "NonFiniteWarning"]


def test_an_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match=r"on_nonfinite='ignore'.*'warn', 'raise', 'skip', 'stop'"):
        L.Trainer(on_nonfinite="ignore")


# -- "warn" (the default): values fulmen reads anyway ---------------------------------------------------------


def test_warn_reports_a_nan_logged_value_once_with_its_step_and_first_bad_gradient(tmp_path):
    module = NaNAt(steps={3})
    trainer, messages = _fit(tmp_path, module, logger=CSVLogger(tmp_path), log_every_n_steps=1)
    assert trainer.nonfinite_guard.mode == "warn"
    assert len(messages) == 1  # the NaN weights keep the loss NaN for every later step: still one report
    message = messages[0]
    assert "'train_loss' = nan read for the loggers at epoch 0, batch 3 (global step 4)" in message
    assert "first 'layer.weight'" in message and "Values read with it: {'train_loss': nan" in message
    # "warn" only reports: the bad step was taken, as without the guard.
    assert trainer.global_step == 8 and not torch.isfinite(module.layer.weight).all()


def test_warn_reads_nothing_extra_a_nan_no_one_reads_is_not_reported(tmp_path):
    _, messages = _fit(tmp_path, NaNAt(steps={3}))  # no logger, no progress bar: no value is read
    assert messages == []


def test_warn_checks_the_results_validate_returns(tmp_path):
    class NaNValidation(NaNAt):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.tensor(float("inf")))

    trainer = _trainer(tmp_path)
    with pytest.warns(UserWarning, match=r"'val_loss' = inf read for the results") as record:
        results = trainer.validate(NaNValidation(), make_loader(16), verbose=False)
    assert results == [{"val_loss": float("inf")}]
    assert sum("val_loss" in str(w.message) for w in record) == 1


def test_warn_checks_the_progress_bar_values(tmp_path):
    module = NaNAt(steps={0})
    trainer = _trainer(tmp_path)
    module.trainer = trainer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, make_loader(16, batch_size=8))
        trainer.progress_bar_metrics  # what a progress bar reads
    assert any("read for the progress bar" in str(w.message) for w in caught)


# -- "raise" -----------------------------------------------------------------------------------------------


def test_raise_stops_at_the_bad_step_before_it_is_taken_and_runs_on_exception(tmp_path):
    seen = []

    class Seen(Callback):
        def on_exception(self, trainer, pl_module, exception):
            seen.append(exception)

    module = NaNAt(steps={3})
    trainer = _trainer(tmp_path, on_nonfinite="raise", callbacks=[Seen()])
    from fulmen.debug import NonFiniteError

    with pytest.raises(NonFiniteError) as error:
        trainer.fit(module, make_loader(64, batch_size=8))
    assert isinstance(error.value, FloatingPointError)
    message = str(error.value)
    assert "Non-finite loss (nan) and gradients (2 of 2 parameters; first 'layer.weight')" in message
    assert "at epoch 0, batch 3 (global step 3)" in message and "{'train_loss': nan}" in message
    assert seen == [error.value]
    assert torch.equal(module.layer.weight, module.weights_before[3])  # the update was not made


# -- "skip" ------------------------------------------------------------------------------------------------


def test_skip_leaves_the_weights_of_a_bad_step_and_warns_once(tmp_path):
    module = NaNAt(steps={3, 5})
    trainer, messages = _fit(tmp_path, module, on_nonfinite="skip", logger=CSVLogger(tmp_path), log_every_n_steps=1)
    guard = trainer.nonfinite_guard
    assert guard.skipped_steps == 2
    # One report: neither the second skip nor the loggers reading the NaN loss of a skipped step repeat it.
    assert len(messages) == 1 and "batch 3 (global step 3)" in messages[0] and "was skipped" in messages[0]
    # A skipped step counts in global_step (as a step a GradScaler skips), so max_steps etc. follow the batches.
    assert trainer.global_step == 8
    for step in (3, 5):
        assert torch.equal(module.weights_after[step], module.weights_before[step])
    assert not torch.equal(module.weights_after[4], module.weights_before[4])
    assert torch.isfinite(module.layer.weight).all()


def test_skip_names_the_first_non_finite_gradient_behind_a_finite_loss(tmp_path):
    module = NaNAt(steps={2}, grad_only=True)
    trainer, messages = _fit(tmp_path, module, on_nonfinite="skip")
    assert trainer.nonfinite_guard.skipped_steps == 1
    assert "Non-finite gradients (1 of 2 parameters; first 'layer.bias') at epoch 0, batch 2" in messages[0]
    assert "loss" not in messages[0].split(" at ")[0]
    assert torch.equal(module.weights_after[2], module.weights_before[2])


def test_a_huge_but_finite_gradient_is_not_taken_for_non_finite(tmp_path):
    # The quick check sums squared gradients, which overflows here; the exact look that follows clears the step.
    module = NaNAt(steps={7}, grad_only=True, grad_value=1e30)
    trainer, messages = _fit(tmp_path, module, on_nonfinite="skip")
    assert trainer.nonfinite_guard.skipped_steps == 0 and messages == []
    assert not torch.equal(module.weights_after[7], module.weights_before[7])


def test_skip_under_manual_optimization_skips_that_optimizer_step(tmp_path):
    module = ManualNaN(steps={2})
    trainer, messages = _fit(tmp_path, module, on_nonfinite="skip")
    assert trainer.nonfinite_guard.skipped_steps == 1 and len(messages) == 1
    assert trainer.global_step == 8  # manual optimization counts the skipped `opt.step()` too
    assert torch.equal(module.weights_after[2], module.weights_before[2])
    assert torch.isfinite(module.layer.weight).all()


def test_skip_with_a_grad_scaler_checks_the_loss_and_leaves_inf_gradients_to_the_scaler(tmp_path):
    from fulmen.plugins import MixedPrecision

    module = NaNAt(steps={2})
    trainer, messages = _fit(tmp_path, module, on_nonfinite="skip", plugins=[MixedPrecision("16-mixed", "cpu")])
    assert trainer.nonfinite_guard.skipped_steps == 1 and "Non-finite loss (nan) at" in messages[0]
    assert torch.isfinite(module.layer.weight).all() and trainer.global_step == 8  # the scaler kept working

    scaled = NaNAt(steps={2}, grad_only=True)
    trainer, messages = _fit(tmp_path, scaled, on_nonfinite="skip", plugins=[MixedPrecision("16-mixed", "cpu")])
    assert trainer.nonfinite_guard.skipped_steps == 0 and messages == []  # the GradScaler skipped it itself
    assert torch.equal(scaled.weights_after[2], scaled.weights_before[2])


# -- "stop" ------------------------------------------------------------------------------------------------


def _clean_weights(tmp_path, epochs):
    torch.manual_seed(0)  # the shuffled order comes from the global RNG, as in the run that stopped
    module = NaNAt(steps=())
    _fit(tmp_path / "clean", module, shuffle=True, max_epochs=epochs)
    return module.layer.weight.detach().clone()


@pytest.mark.parametrize("bad_step", [10, 8], ids=["mid_epoch", "first_batch_of_epoch"])
def test_stop_saves_the_last_finite_state_and_resuming_trains_on_as_if_nothing_happened(tmp_path, bad_step):
    torch.manual_seed(0)
    module = NaNAt(steps={bad_step})
    trainer, messages = _fit(tmp_path, module, shuffle=True, on_nonfinite="stop", max_epochs=3, min_epochs=3)
    path = tmp_path / "checkpoints" / f"nonfinite-epoch=1-step={bad_step}.ckpt"
    assert trainer.nonfinite_guard.checkpoint_path == str(path) and path.is_file()
    assert f"saved the last finite state to {path}" in messages[0]
    assert trainer.should_stop and trainer.current_epoch == 2  # stopped despite min_epochs=3
    assert torch.isfinite(module.layer.weight).all()
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["global_step"] == bad_step
    torch.testing.assert_close(checkpoint["state_dict"]["layer.weight"], module.weights_before[bad_step])

    resumed = NaNAt(steps=())  # the cause fixed
    _fit(tmp_path / "resumed", resumed, shuffle=True, max_epochs=3, ckpt_path=str(path))
    torch.testing.assert_close(resumed.layer.weight, _clean_weights(tmp_path, epochs=3), atol=1e-6, rtol=0)
    assert min(resumed.weights_before) == bad_step  # the offending batch is trained again


def test_stop_saves_into_the_checkpoint_callbacks_directory(tmp_path):
    from fulmen.callbacks import ModelCheckpoint

    callback = ModelCheckpoint(dirpath=tmp_path / "mine")
    trainer, _ = _fit(tmp_path, NaNAt(steps={1}), on_nonfinite="stop", enable_checkpointing=True,
                      callbacks=[callback])
    assert trainer.nonfinite_guard.checkpoint_path == str(tmp_path / "mine" / "nonfinite-epoch=0-step=1.ckpt")
