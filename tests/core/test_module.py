"""LightningModule: its properties with and without a Trainer, printing, freezing, logging outside a run,
the optimizer wrapper seen from `training_step`, and `configure_callbacks`."""

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.callbacks import Callback, ModelSummary, TQDMProgressBar
from fulmen.strategies import SingleDeviceStrategy
from helpers.module_fixtures import LinearModule, quiet_trainer, vector_loader


def test_module_is_an_nn_module():
    model = LinearModule()
    assert isinstance(model, nn.Module)
    assert [name for name, _ in model.named_parameters()] == ["layer.weight", "layer.bias"]
    assert model(torch.zeros(3, 32)).shape == (3, 2)


def test_trainer_property_raises_when_unattached():
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
        LinearModule().trainer


def test_a_nested_lightning_module_shares_the_trainer():
    outer = LinearModule()
    outer.inner = nn.Sequential(LinearModule())  # below a plain module: not reached (as in Lightning)
    outer.child = LinearModule()
    outer.child.grandchild = LinearModule()
    trainer = L.Trainer(logger=False)
    outer.trainer = trainer
    assert outer.child.trainer is trainer and outer.child.grandchild.trainer is trainer
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
        outer.inner[0].trainer


def test_trainer_property_after_fit_is_the_trainer(tmp_path):
    model = LinearModule()
    trainer = quiet_trainer(tmp_path)
    trainer.fit(model, vector_loader())
    assert model.trainer is trainer
    assert trainer.lightning_module is model


def test_properties_without_trainer_have_defaults():
    model = LinearModule()
    assert model.current_epoch == 0
    assert model.global_step == 0
    assert model.global_rank == 0
    assert model.local_rank == 0
    assert model.logger is None
    assert model.loggers == []
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32


def test_properties_follow_the_trainer(tmp_path):
    seen = {}

    class Recording(LinearModule):
        def training_step(self, batch, batch_idx):
            seen[batch_idx] = (self.current_epoch, self.global_step, self.device, self.dtype)
            return super().training_step(batch, batch_idx)

    model = Recording()
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_train_batches=2)
    trainer.fit(model, vector_loader())
    assert seen[0] == (1, 2, torch.device("cpu"), torch.float32)
    assert seen[1] == (1, 3, torch.device("cpu"), torch.float32)
    assert (model.current_epoch, model.global_step) == (2, 4)
    assert model.global_rank == 0 and model.local_rank == 0


def test_logger_and_loggers_come_from_the_trainer(tmp_path):
    from fulmen.loggers import CSVLogger

    logger = CSVLogger(save_dir=tmp_path)
    model = LinearModule()
    trainer = quiet_trainer(tmp_path, logger=logger)
    trainer.fit(model, vector_loader())
    assert model.logger is logger
    assert model.loggers == [logger]


def test_logger_false_gives_no_loggers(tmp_path):
    model = LinearModule()
    quiet_trainer(tmp_path, logger=False).fit(model, vector_loader())
    assert model.logger is None
    assert model.loggers == []


def test_dtype_after_double_and_half():
    model = LinearModule()
    model.double()
    assert model.dtype == torch.float64
    assert model.layer.weight.dtype == torch.float64
    model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_automatic_optimization_setter():
    model = LinearModule()
    assert model.automatic_optimization is True
    model.automatic_optimization = False
    assert model.automatic_optimization is False


def test_example_input_array_defaults_to_none_and_is_settable():
    model = LinearModule()
    assert model.example_input_array is None
    example = torch.ones(1, 32)
    model.example_input_array = example
    assert model.example_input_array is example


def test_print_on_rank_zero(tmp_path, capsys):
    class Printing(LinearModule):
        def on_train_start(self):
            self.print("hello from rank zero")

    quiet_trainer(tmp_path).fit(Printing(), vector_loader())
    assert "hello from rank zero" in capsys.readouterr().out


def test_print_is_silent_on_other_ranks(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(SingleDeviceStrategy, "global_rank", property(lambda self: 1))
    trainer = quiet_trainer(tmp_path)
    assert not trainer.is_global_zero
    model = LinearModule()
    model.trainer = trainer
    model.print("should not appear")
    assert "should not appear" not in capsys.readouterr().out


def test_freeze_and_unfreeze():
    model = LinearModule()
    model.freeze()
    assert all(not p.requires_grad for p in model.parameters())
    assert not model.training and not model.layer.training
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters())
    assert model.training and model.layer.training


def test_predict_step_defaults_to_forward(tmp_path):
    model = LinearModule()
    loader = vector_loader(length=8, batch_size=4)
    predictions = quiet_trainer(tmp_path).predict(model, loader)
    assert len(predictions) == 2
    with torch.no_grad():
        expected = [model(batch) for batch in loader]
    for got, want in zip(predictions, expected):
        torch.testing.assert_close(got, want)


def test_log_outside_trainer_warns_and_drops_the_value():
    model = LinearModule()
    with pytest.warns(UserWarning, match="not attached to a Trainer|reference is not registered"):
        model.log("value_logged_without_trainer", 1.0)
    with pytest.raises(RuntimeError):
        model.trainer


def test_step_logged_value_reaches_callback_metrics_without_a_progress_bar(tmp_path):
    seen_at_epoch_end = []

    class Peek(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen_at_epoch_end.extend(trainer.callback_metrics)

    trainer = quiet_trainer(tmp_path, callbacks=[Peek()])
    trainer.fit(LinearModule(), vector_loader())
    assert "loss" in seen_at_epoch_end
    assert set(trainer.callback_metrics) == {"loss"}
    assert set(trainer.logged_metrics) == {"loss"}
    assert set(trainer.progress_bar_metrics) == {"loss"}


def test_optimizers_in_training_step_is_the_wrapped_optimizer(tmp_path):
    seen = {}

    class Inspecting(LinearModule):
        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            real = self.trainer.optimizers[0]
            seen["isinstance"] = isinstance(opt, torch.optim.SGD)
            seen["same_state"] = opt.state is real.state
            seen["same_groups"] = opt.param_groups is real.param_groups
            seen["unwrapped"] = self.optimizers(use_pl_optimizer=False) is real
            seen["scheduler"] = self.lr_schedulers()
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    model = Inspecting()
    trainer = quiet_trainer(tmp_path)
    trainer.fit(model, vector_loader())
    assert seen["isinstance"] and seen["same_state"] and seen["same_groups"] and seen["unwrapped"]
    assert isinstance(seen["scheduler"], torch.optim.lr_scheduler.StepLR)
    # momentum buffers written by the real step are visible through the wrapper's state
    assert trainer.optimizers[0].state[model.layer.weight]["momentum_buffer"] is not None


def test_lr_schedulers_is_none_without_schedulers(tmp_path):
    seen = []

    class NoScheduler(LinearModule):
        def training_step(self, batch, batch_idx):
            seen.append(self.lr_schedulers())
            return super().training_step(batch, batch_idx)

    quiet_trainer(tmp_path).fit(NoScheduler(), vector_loader())
    assert seen == [None, None]


def test_manual_optimization_steps_through_the_wrapper(tmp_path):
    class Manual(LinearModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(self(batch).sum())
            opt.step()

    model = Manual()
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(tmp_path)
    trainer.fit(model, vector_loader())
    assert trainer.global_step == 2
    assert not torch.equal(before, model.layer.weight)


class _Marker(Callback):
    def __init__(self, tag):
        self.tag = tag


def test_configure_callbacks_adds_a_callback(tmp_path):
    added = _Marker("module")

    class WithCallbacks(LinearModule):
        def configure_callbacks(self):
            return added

    trainer = quiet_trainer(tmp_path)
    trainer.fit(WithCallbacks(), vector_loader())
    assert added in trainer.callbacks


def test_configure_callbacks_replaces_trainer_callback_of_same_type(tmp_path):
    from_trainer, from_module = _Marker("trainer"), _Marker("module")

    class WithCallbacks(LinearModule):
        def configure_callbacks(self):
            return [from_module]

    trainer = quiet_trainer(tmp_path, callbacks=[from_trainer, ModelSummary(max_depth=0)])
    trainer.fit(WithCallbacks(), vector_loader())
    markers = [cb for cb in trainer.callbacks if isinstance(cb, _Marker)]
    assert markers == [from_module]
    assert any(isinstance(cb, ModelSummary) for cb in trainer.callbacks)


def test_configure_callbacks_replaces_the_default_progress_bar(tmp_path, capsys):
    module_bar = TQDMProgressBar(refresh_rate=7)

    class WithBar(LinearModule):
        def configure_callbacks(self):
            return [module_bar]

    trainer = quiet_trainer(tmp_path, enable_progress_bar=True)
    trainer.fit(WithBar(), vector_loader())
    bars = [cb for cb in trainer.callbacks if isinstance(cb, TQDMProgressBar)]
    assert bars == [module_bar]
    assert trainer.progress_bar_callback is module_bar


def test_configure_callbacks_subclass_replaces_base_class_callback(tmp_path):
    class MyBar(TQDMProgressBar):
        pass

    module_bar = MyBar()

    class WithBar(LinearModule):
        def configure_callbacks(self):
            return [module_bar]

    trainer = quiet_trainer(tmp_path, enable_progress_bar=True)
    trainer.fit(WithBar(), vector_loader())
    assert [cb for cb in trainer.callbacks if isinstance(cb, TQDMProgressBar)] == [module_bar]


def test_fit_rejects_a_plain_nn_module(tmp_path):
    with pytest.raises(TypeError):
        quiet_trainer(tmp_path).fit(nn.Linear(32, 2), vector_loader())


def test_module_without_trainer_can_still_be_used_as_a_model():
    model = L.LightningModule()
    assert list(model.parameters()) == []
    assert model.device == torch.device("cpu")
