"""`self.log` refuses what Lightning refuses: forbidden hooks, bad values, bad names and bad options.

Hook lists and error types were checked against Lightning 2.6; the messages are fulmen's own and must
name the key or hook and the fix.
"""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fulmen.utilities.exceptions import MisconfigurationException
from helpers.log_fixtures import log_trainer, module_logging_in
from helpers.tiny import TinyModule, make_loader


def _fit(tmp_path, module, val=False, **flags):
    trainer = log_trainer(tmp_path, limit_train_batches=2, limit_val_batches=1 if val else 0, **flags)
    trainer.fit(module, make_loader(), make_loader(16) if val else None)
    return trainer


def _log_x(module):
    module.log("x", 1.0)


@pytest.mark.parametrize("hook", ["setup", "configure_optimizers", "on_fit_start", "on_train_end", "on_fit_end",
                                  "teardown"])
def test_log_in_forbidden_hook_names_the_hook(tmp_path, hook):
    module = module_logging_in(hook, _log_x)
    with pytest.raises(MisconfigurationException, match=rf"You can't `self\.log\(\)` inside `{hook}`.*'x'.*Log from"):
        _fit(tmp_path, module)


def test_log_in_predict_step_raises(tmp_path):
    class Predicting(TinyModule):
        def predict_step(self, batch, batch_idx):
            self.log("x", 1.0)
            return self(batch[0])

    with pytest.raises(MisconfigurationException, match="`predict_step`"):
        log_trainer(tmp_path).predict(Predicting(), make_loader(16))


@pytest.mark.parametrize("hook", ["on_train_epoch_end", "on_validation_epoch_end"])
def test_log_on_step_in_epoch_hook_raises(tmp_path, hook):
    module = module_logging_in(hook, lambda m: m.log("x", 1.0, on_step=True))
    with pytest.raises(MisconfigurationException, match=rf"on_step=True.*`{hook}`.*on_step=False"):
        _fit(tmp_path, module, val=True)


def test_log_on_epoch_false_in_epoch_hook_raises(tmp_path):
    module = module_logging_in("on_train_epoch_end", lambda m: m.log("x", 1.0, on_epoch=False))
    with pytest.raises(MisconfigurationException, match="on_epoch=False.*on_epoch=True"):
        _fit(tmp_path, module)


# Lightning lets every one of these hooks log (the value lands in callback_metrics as an epoch value).


@pytest.mark.parametrize("hook", [
    "on_train_start",
    "on_train_epoch_start",
    "on_validation_start",
    "on_validation_epoch_start",
    "on_train_epoch_end",
    "on_validation_epoch_end",
])
def test_log_in_start_and_end_hooks_is_allowed(tmp_path, hook):
    trainer = _fit(tmp_path, module_logging_in(hook, lambda m: m.log("h", 5.0)), val=True)
    assert trainer.callback_metrics["h"].item() == 5.0


def test_log_in_on_test_start_is_allowed(tmp_path):
    trainer = log_trainer(tmp_path, limit_test_batches=1)
    trainer.test(module_logging_in("on_test_start", lambda m: m.log("h", 5.0)), make_loader(16))
    assert trainer.callback_metrics["h"].item() == 5.0


@pytest.mark.parametrize("value, message", [  # Lightning's words first ("`self.log(x, text)` was called"), then the fix
    ("text", r"`self\.log\(x, text\)` was called, but `str` values cannot be logged: only Python numbers"),
    (None, r"`self\.log\(x, None\)` was called, but `NoneType` values"),
    ([1.0], r"`self\.log\(x, \[1\.0\]\)` was called, but `list` values"),
    (torch.ones(3), r"`self\.log\(x, tensor.*\)` was called, but the tensor must have a single element .*shape is "
                    r"\(3,\).*\.mean\(\)"),
    ({"a": 1.0}, r"`self\.log\(x, \{'a': 1\.0\}\)` was called, but dict values .*self\.log_dict"),
])
def test_log_unloggable_value_raises_value_error(tmp_path, value, message):
    module = module_logging_in("training_step", lambda m: m.log("x", value))
    with pytest.raises(ValueError, match=message):
        _fit(tmp_path, module)


def test_log_key_with_dataloader_idx_suffix_raises(tmp_path):
    module = module_logging_in("training_step", lambda m: m.log("acc/dataloader_idx_0", 1.0))
    with pytest.raises(MisconfigurationException, match="key `acc/dataloader_idx_0` but it should not contain.*"
                                                         "add_dataloader_idx=False"):
        _fit(tmp_path, module)


def test_a_key_with_the_suffix_is_logged_as_it_is_with_add_dataloader_idx_false(tmp_path):
    module = module_logging_in("training_step", lambda m: m.log("acc/dataloader_idx_0", 1.0,
                                                                add_dataloader_idx=False))
    assert _fit(tmp_path, module).callback_metrics["acc/dataloader_idx_0"].item() == 1.0


def test_log_neither_on_step_nor_on_epoch_raises(tmp_path):
    module = module_logging_in("training_step", lambda m: m.log("x", 1.0, on_step=False, on_epoch=False))
    with pytest.raises(MisconfigurationException, match=r"`self\.log\(on_step=False, on_epoch=False\)` is not useful: "
                                                         r"'x' would go nowhere\. Set on_step=True"):
        _fit(tmp_path, module)


@pytest.mark.parametrize("second", [dict(prog_bar=True), dict(on_epoch=True), dict(reduce_fx="sum")])
def test_log_same_key_twice_with_different_arguments_raises(tmp_path, second):
    def log_twice(module):
        module.log("x", 1.0)
        module.log("x", 2.0, **second)

    with pytest.raises(MisconfigurationException, match="twice in `training_step` with different arguments"):
        _fit(tmp_path, module_logging_in("training_step", log_twice))


def test_log_same_key_twice_with_same_arguments_keeps_last(tmp_path):
    def log_twice(module):
        module.log("x", 1.0)
        module.log("x", 2.0)

    trainer = _fit(tmp_path, module_logging_in("training_step", log_twice))
    assert trainer.callback_metrics["x"].item() == 2.0


@pytest.mark.parametrize("reduce_fx", ["median", torch.median, "prod"])
def test_log_unknown_reduce_fx_raises(tmp_path, reduce_fx):
    module = module_logging_in("training_step", lambda m: m.log("x", 1.0, reduce_fx=reduce_fx))
    with pytest.raises(MisconfigurationException, match=r"reduce_fx=.*'mean', 'sum', 'max' or 'min'"):
        _fit(tmp_path, module)


@pytest.mark.parametrize("not_a_mapping", [[("a", 1.0)], 1.0])
def test_log_dict_with_non_mapping_raises_value_error(tmp_path, not_a_mapping):
    # Lightning fails later with an AttributeError ('list' object has no attribute 'items'); fulmen says why.
    module = module_logging_in("training_step", lambda m: m.log_dict(not_a_mapping))
    with pytest.raises(ValueError, match=f"log_dict.*mapping.*{type(not_a_mapping).__name__}"):
        _fit(tmp_path, module)


def test_log_outside_trainer_warns_and_does_nothing():
    module = TinyModule()
    with pytest.warns(UserWarning, match="'x'.*not attached to a Trainer"):
        module.log("x", 1.0)
    with pytest.warns(UserWarning, match="'y'.*not attached to a Trainer"):
        module.log_dict({"y": 2.0})
    assert module._trainer is None


class _StringDataset(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return "sample"


def test_epoch_mean_with_uninferable_batch_size_raises(tmp_path):
    class Module(TinyModule):
        def training_step(self, batch, batch_idx):
            self.log("m", 1.0, on_step=False, on_epoch=True)
            return self(torch.zeros(2, 32)).sum()

    with pytest.raises(MisconfigurationException, match=r"batch_size=N"):
        log_trainer(tmp_path).fit(Module(), DataLoader(_StringDataset(), batch_size=2))


class _LogsAMetric(TinyModule):
    """Logs a torchmetrics MeanMetric that is an attribute (`attribute=True`) or lives in a plain dict."""

    def __init__(self, attribute, metric_attribute=None):
        super().__init__()
        import torchmetrics

        metric = torchmetrics.MeanMetric()
        if attribute:
            self.mean_loss = metric
        self.hidden = {"metric": metric}  # a plain dict: not registered as a submodule
        self.metric_attribute = metric_attribute

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        metric = self.hidden["metric"]
        metric(loss.detach())
        self.log("mean_loss", metric, on_epoch=True, metric_attribute=self.metric_attribute)
        return loss


def test_logged_metric_must_be_a_module_attribute(tmp_path):
    # Lightning 2.6.6 raises a MisconfigurationException here too ("Could not find the `LightningModule` attribute").
    pytest.importorskip("torchmetrics")
    with pytest.raises(MisconfigurationException, match="Could not find the `LightningModule` attribute for the "
                                                         "`torchmetrics.Metric` logged as 'mean_loss'. You can fix this "
                                                         "by setting an attribute"):
        _fit(tmp_path, _LogsAMetric(attribute=False))


def test_metric_attribute_names_a_metric_kept_elsewhere(tmp_path):
    pytest.importorskip("torchmetrics")
    trainer = _fit(tmp_path, _LogsAMetric(attribute=False, metric_attribute="metric"))
    assert "mean_loss" in trainer.callback_metrics
    assert "mean_loss" in _fit(tmp_path, _LogsAMetric(attribute=True)).callback_metrics


def test_same_key_from_two_dataloaders_without_the_suffix_raises(tmp_path):
    """Lightning 2.6.6 refuses it too (MisconfigurationException, checked by running it): both dataloaders would
    reduce into one key."""

    class Module(TinyModule):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("shared", 1.0, add_dataloader_idx=False)

    trainer = log_trainer(tmp_path, limit_val_batches=None)
    with pytest.raises(MisconfigurationException,
                       match=r"`self\.log\('shared', \.\.\., add_dataloader_idx=False\)` was called in "
                             r"`validation_step` for dataloader 0 and for dataloader 1.*different name per dataloader"):
        trainer.validate(Module(), [make_loader(16), make_loader(8)], verbose=False)
