"""Hook dispatch: every dispatched name is a defined hook, only overridden hooks run, callbacks run before
the module (monitoring callbacks after it at epoch end), and the stage hooks' owner order."""

import pytest
import torch

import fulmen as L
from fulmen.trainer.states import TrainerFn
from fulmen.callbacks import Callback
from fulmen.core import hooks as hook_catalogue
from fulmen.trainer.hook_events import HOOK_NAMES
from helpers.module_fixtures import LinearModule, LinearModuleWithValidation, quiet_trainer, vector_loader

_CATALOGUE = (hook_catalogue.ModelHooks, hook_catalogue.DataHooks, hook_catalogue.CheckpointHooks,
              L.LightningModule, Callback)

_PER_BATCH_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_validation_batch_start", "on_validation_batch_end",
)


@pytest.mark.parametrize("name", sorted(HOOK_NAMES))
def test_every_dispatched_name_is_a_defined_hook(name):
    owners = [cls.__name__ for cls in _CATALOGUE if callable(getattr(cls, name, None))]
    assert owners, f"{name} is dispatched but defined on none of the hook catalogues"


def test_callback_hooks_are_a_subset_of_the_dispatched_names():
    callback_hooks = {name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown")}
    assert callback_hooks <= HOOK_NAMES


def test_callback_overriding_one_hook_is_called_once(tmp_path):
    calls = []

    class FitStartOnly(Callback):
        def on_fit_start(self, trainer, pl_module):
            calls.append((trainer.global_step, type(pl_module).__name__))

    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_train_batches=3, callbacks=[FitStartOnly()])
    trainer.fit(LinearModule(), vector_loader())
    assert calls == [(0, "LinearModule")]


def test_hooks_a_callback_does_not_override_are_never_looked_up_per_batch(tmp_path):
    looked_up = []

    class Counting(Callback):
        def __getattribute__(self, name):
            looked_up.append(name)
            return super().__getattribute__(name)

        def on_fit_start(self, trainer, pl_module):
            pass

    trainer = quiet_trainer(tmp_path, limit_train_batches=4, limit_val_batches=2, callbacks=[Counting()])
    trainer.fit(LinearModuleWithValidation(), vector_loader(), vector_loader())
    assert looked_up.count("on_fit_start") == 1
    assert not [name for name in looked_up if name in _PER_BATCH_HOOKS]


def test_hook_assigned_on_the_instance_is_called(tmp_path):
    calls = []
    callback = Callback()
    callback.on_train_start = lambda trainer, pl_module: calls.append("instance hook")
    quiet_trainer(tmp_path, callbacks=[callback]).fit(LinearModule(), vector_loader())
    assert calls == ["instance hook"]


def test_callback_runs_before_the_module_for_each_event(tmp_path):
    order = []

    class Recording(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            order.append(("callback", batch_idx))

        def on_train_epoch_start(self, trainer, pl_module):
            order.append(("callback", "epoch"))

    class Module(LinearModule):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            order.append(("module", batch_idx))

        def on_train_epoch_start(self):
            order.append(("module", "epoch"))

    quiet_trainer(tmp_path, callbacks=[Recording()]).fit(Module(), vector_loader())
    assert order == [("callback", "epoch"), ("module", "epoch"), ("callback", 0), ("module", 0),
                     ("callback", 1), ("module", 1)]


def test_callbacks_run_in_list_order(tmp_path):
    order = []

    class Named(Callback):
        def __init__(self, name):
            self.name = name

        def on_train_start(self, trainer, pl_module):
            order.append(self.name)

    quiet_trainer(tmp_path, callbacks=[Named("a"), Named("b"), Named("c")]).fit(LinearModule(), vector_loader())
    assert order == ["a", "b", "c"]


class _EpochEndModule(LinearModule):
    def __init__(self, order):
        super().__init__()
        self.order = order

    def on_train_epoch_end(self):
        self.order.append("module")
        self.log("epoch_metric", float(self.current_epoch + 10))


def test_monitoring_callback_runs_after_the_module_and_sees_its_value(tmp_path):
    order, seen = [], {}

    class Normal(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("normal")
            seen["normal"] = "epoch_metric" in trainer.callback_metrics

    class Monitoring(Callback):
        _monitors_metrics = True

        def on_train_epoch_end(self, trainer, pl_module):
            order.append("monitoring")
            seen["monitoring"] = trainer.callback_metrics.get("epoch_metric")

    callbacks = [Monitoring(), Normal()]
    quiet_trainer(tmp_path, callbacks=callbacks).fit(_EpochEndModule(order), vector_loader())
    assert order == ["normal", "module", "monitoring"]
    assert seen["normal"] is False
    assert seen["monitoring"] == torch.tensor(10.0)


def test_monitoring_callback_sees_each_epochs_value(tmp_path):
    order, values = [], []

    class Monitoring(Callback):
        _monitors_metrics = True

        def on_train_epoch_end(self, trainer, pl_module):
            values.append(trainer.callback_metrics["epoch_metric"].item())

    trainer = quiet_trainer(tmp_path, max_epochs=3, callbacks=[Monitoring()])
    trainer.fit(_EpochEndModule(order), vector_loader())
    assert values == [10.0, 11.0, 12.0]
    assert order == ["module"] * 3


def test_stage_hooks_run_datamodule_then_callbacks_then_module(tmp_path):
    order = []

    class Data(L.LightningDataModule):
        def prepare_data(self):
            order.append("datamodule.prepare_data")

        def setup(self, stage):
            order.append(f"datamodule.setup({stage.value})")

        def teardown(self, stage):
            order.append(f"datamodule.teardown({stage.value})")

        def train_dataloader(self):
            return vector_loader()

    class Recording(Callback):
        def setup(self, trainer, pl_module, stage):
            order.append(f"callback.setup({stage.value})")

        def teardown(self, trainer, pl_module, stage):
            order.append(f"callback.teardown({stage.value})")

    class Module(LinearModule):
        def prepare_data(self):
            order.append("module.prepare_data")

        def setup(self, stage):
            assert isinstance(stage, TrainerFn) and stage == "fit"  # Lightning passes the TrainerFn (a str)
            order.append(f"module.setup({stage.value})")

        def teardown(self, stage):
            order.append(f"module.teardown({stage.value})")

    quiet_trainer(tmp_path, callbacks=[Recording()]).fit(Module(), datamodule=Data())
    assert order == [
        "datamodule.prepare_data", "module.prepare_data",
        "datamodule.setup(fit)", "callback.setup(fit)", "module.setup(fit)",
        "datamodule.teardown(fit)", "callback.teardown(fit)", "module.teardown(fit)",
    ]


def test_exception_reaches_callbacks_and_datamodule(tmp_path):
    seen = []

    class Failing(LinearModule):
        def training_step(self, batch, batch_idx):
            raise KeyError("boom")

    class Watching(Callback):
        def on_exception(self, trainer, pl_module, exception):
            seen.append(("callback", type(exception).__name__))

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return vector_loader()

        def on_exception(self, exception):
            seen.append(("datamodule", type(exception).__name__))

    trainer = quiet_trainer(tmp_path, callbacks=[Watching()])
    with pytest.raises(KeyError, match="boom"):
        trainer.fit(Failing(), datamodule=Data())
    assert seen == [("callback", "KeyError"), ("datamodule", "KeyError")]
    assert trainer.interrupted


@pytest.mark.parametrize(("removed", "entry"), [("training_epoch_end", "fit"), ("validation_epoch_end", "validate"),
                                               ("test_epoch_end", "test")])
def test_removed_epoch_end_hooks_raise(tmp_path, removed, entry):
    class Old(LinearModuleWithValidation):
        def test_step(self, batch, batch_idx):
            pass

    setattr(Old, removed, lambda self, outputs: None)
    trainer = quiet_trainer(tmp_path)
    with pytest.raises(NotImplementedError, match=removed):
        if entry == "fit":
            trainer.fit(Old(), vector_loader())
        else:
            getattr(trainer, entry)(Old(), vector_loader(), verbose=False)


def test_running_hook_name_lets_log_work_from_callbacks(tmp_path):
    class Logging(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            pl_module.log("from_callback", 3.0)

    trainer = quiet_trainer(tmp_path, callbacks=[Logging()])
    trainer.fit(LinearModule(), vector_loader())
    assert trainer.callback_metrics["from_callback"] == torch.tensor(3.0)
