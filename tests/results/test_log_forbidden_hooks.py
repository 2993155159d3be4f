"""`self.log` raises in every hook where Lightning 2.6 forbids it, and the error names the hook actually running.

Checked against a released Lightning 2.6.6: each hook below raises a MisconfigurationException there.
"""

import pytest
import torch

import fulmen as L
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.log_fixtures import log_trainer, module_logging_in
from helpers.tiny import WithDataHooks


class WithData(WithDataHooks):
    """Every stage's hooks run without arguments; a StepLR makes `lr_scheduler_step` run too."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]


def _log_x(module):
    module.log("x", 1.0)


_FIT_HOOKS = [
    "prepare_data", "setup", "configure_callbacks", "configure_sharded_model", "configure_model",
    "configure_optimizers", "on_fit_start",
    "train_dataloader", "val_dataloader", "on_before_batch_transfer", "transfer_batch_to_device",
    "on_after_batch_transfer", "on_validation_model_zero_grad", "on_validation_model_eval",
    "on_validation_model_train", "on_validation_end", "lr_scheduler_step", "on_save_checkpoint", "on_train_end",
    "on_fit_end", "teardown",
]
_TEST_HOOKS = ["test_dataloader", "on_test_model_eval", "on_test_model_train", "on_test_end"]
_PREDICT_HOOKS = [
    "predict_dataloader", "on_predict_model_eval", "on_predict_start", "on_predict_epoch_start",
    "on_predict_batch_start", "predict_step", "on_predict_batch_end", "on_predict_epoch_end", "on_predict_end",
]


def _trainer(tmp_path, **flags):
    flags.setdefault("max_epochs", 1)
    return log_trainer(tmp_path, limit_train_batches=2, limit_val_batches=1, limit_test_batches=1,
                       limit_predict_batches=1, **flags)


@pytest.mark.parametrize("hook", _FIT_HOOKS)
def test_log_in_forbidden_fit_hook_names_that_hook(tmp_path, hook):
    module = module_logging_in(hook, _log_x, base=WithData)
    trainer = _trainer(tmp_path, enable_checkpointing=hook == "on_save_checkpoint")
    with pytest.raises(MisconfigurationException, match=rf"inside `{hook}`, where logging is not supported"):
        trainer.fit(module)


@pytest.mark.parametrize("hook", _TEST_HOOKS)
def test_log_in_forbidden_test_hook_names_that_hook(tmp_path, hook):
    module = module_logging_in(hook, _log_x, base=WithData)
    with pytest.raises(MisconfigurationException, match=rf"inside `{hook}`, where logging is not supported"):
        _trainer(tmp_path).test(module, verbose=False)


@pytest.mark.parametrize("hook", _PREDICT_HOOKS)
def test_log_in_predict_hook_names_that_hook(tmp_path, hook):
    module = module_logging_in(hook, _log_x, base=WithData)
    with pytest.raises(MisconfigurationException, match=rf"inside `{hook}`, where logging is not supported"):
        _trainer(tmp_path).predict(module)


def test_log_in_on_load_checkpoint_names_that_hook(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit(WithData())
    path = str(tmp_path / "saved.ckpt")
    trainer.save_checkpoint(path)
    module = module_logging_in("on_load_checkpoint", _log_x, base=WithData)
    with pytest.raises(MisconfigurationException, match=r"inside `on_load_checkpoint`, where logging"):
        _trainer(tmp_path, max_epochs=2).fit(module, ckpt_path=path)


def test_log_in_callback_on_exception_names_that_hook(tmp_path):
    class Failing(WithData):
        def training_step(self, batch, batch_idx):
            raise ValueError("boom")

    class LogsOnException(L.Callback):
        def on_exception(self, trainer, pl_module, exception):
            pl_module.log("x", 1.0)

    with pytest.raises(MisconfigurationException, match=r"inside `on_exception`, where logging"):
        _trainer(tmp_path, callbacks=[LogsOnException()]).fit(Failing())


def test_hook_name_is_restored_after_a_nested_user_call(tmp_path):
    """A batch-transfer hook inside training must not leave its name behind for `training_step`'s `self.log`."""

    class TransferThenLog(WithData):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            return batch

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train_x", loss)
            return loss

    trainer = _trainer(tmp_path)
    trainer.fit(TransferThenLog())
    assert "train_x" in trainer.callback_metrics


@pytest.mark.parametrize("hook", ["on_sanity_check_start", "on_sanity_check_end"])
def test_log_in_callback_sanity_check_hooks_names_that_hook(tmp_path, hook):
    callback_class = type("LogsInSanity", (L.Callback,), {hook: lambda self, trainer, pl_module: pl_module.log("x", 1.0)})
    with pytest.raises(MisconfigurationException, match=rf"inside `{hook}`, where logging is not supported"):
        _trainer(tmp_path, callbacks=[callback_class()], num_sanity_val_steps=1).fit(WithData())
