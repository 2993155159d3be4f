"""HookDispatch built without a Trainer: a stand-in trainer, a real SingleDeviceStrategy and a Run."""

import torch

from fulmen.callbacks import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.trainer.hook_dispatch import HookDispatch
from fulmen.trainer.hook_events import EVENTS, HookEvents
from fulmen.trainer.run import Run
from helpers.module_fixtures import LinearModule


class StandInTrainer:
    """What callbacks receive as `trainer`; HookDispatch reads only the ranks from it."""

    local_rank = global_rank = 0


class Recording(LinearModule):
    def __init__(self, calls, run_of):
        super().__init__()
        self.calls, self.run_of = calls, run_of

    def on_train_start(self):
        self.calls.append(("module", "on_train_start", self.run_of().hook_name))

    def on_train_epoch_end(self):
        self.calls.append(("module", "on_train_epoch_end", self.run_of().hook_name))

    def training_step(self, batch, batch_idx):
        self.calls.append(("module", "training_step", self.run_of().hook_name))
        return self(batch).sum()

    def setup(self, stage):
        self.calls.append(("module", "setup", stage))

    def on_load_checkpoint(self, checkpoint):
        self.calls.append(("module", "on_load_checkpoint", None))


class RecordingCallback(Callback):
    def __init__(self, calls, tag, monitors=False):
        self.calls, self.tag, self._monitors_metrics = calls, tag, monitors

    def on_train_start(self, trainer, pl_module):
        self.calls.append((self.tag, "on_train_start", trainer))

    def on_train_epoch_end(self, trainer, pl_module):
        self.calls.append((self.tag, "on_train_epoch_end", trainer))

    def setup(self, trainer, pl_module, stage):
        self.calls.append((self.tag, "setup", stage))

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        self.calls.append((self.tag, "on_load_checkpoint", None))


class RecordingDataModule(LightningDataModule):
    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def setup(self, stage):
        self.calls.append(("datamodule", "setup", stage))

    def on_load_checkpoint(self, checkpoint):
        self.calls.append(("datamodule", "on_load_checkpoint", None))


def _bound(calls, callbacks, datamodule=None):
    trainer, strategy = StandInTrainer(), SingleDeviceStrategy()
    hooks = HookDispatch(trainer, strategy)
    module = Recording(calls, lambda: run)
    run = Run(module=module, datamodule=datamodule, callbacks=callbacks)
    hooks.start(run)
    strategy.connect(module)
    hooks.bind()
    return hooks, trainer, run


def test_every_event_is_declared_on_hook_events():
    declared = set(vars(HookEvents))
    assert [name for name in EVENTS if name not in declared] == []


def test_bind_sets_only_declared_events():
    hooks, _, _ = _bound([], [Callback()])
    public = {name for name in vars(hooks) if not name.startswith("_")}
    assert public <= set(vars(HookEvents))


def test_events_before_bind_are_no_ops():
    calls = []
    hooks = HookDispatch(StandInTrainer(), SingleDeviceStrategy())
    module = Recording(calls, lambda: None)
    hooks.start(Run(module=module, callbacks=[RecordingCallback(calls, "cb")]))
    assert hooks.on_train_start() is None
    assert hooks.on_train_epoch_end() is None
    assert calls == []


def test_callbacks_then_module_with_the_running_hook_name():
    calls = []
    hooks, trainer, run = _bound(calls, [RecordingCallback(calls, "first"), RecordingCallback(calls, "second")])
    hooks.on_train_start()
    assert calls == [("first", "on_train_start", trainer), ("second", "on_train_start", trainer),
                     ("module", "on_train_start", "on_train_start")]
    assert run.hook_name is None  # restored after the event


def test_monitoring_callbacks_run_after_the_module_at_train_epoch_end():
    calls = []
    hooks, trainer, _ = _bound(calls, [RecordingCallback(calls, "monitor", monitors=True),
                                       RecordingCallback(calls, "plain")])
    hooks.on_train_epoch_end()
    assert [(owner, name) for owner, name, _ in calls] == [
        ("plain", "on_train_epoch_end"), ("module", "on_train_epoch_end"), ("monitor", "on_train_epoch_end")]


def test_step_method_runs_through_the_strategy_as_its_hook():
    calls = []
    hooks, _, _ = _bound(calls, [])
    loss = hooks.training_step(torch.ones(2, 32), 0)
    assert isinstance(loss, torch.Tensor)
    assert calls == [("module", "training_step", "training_step")]


def test_stage_and_checkpoint_hook_owner_order():
    calls = []
    hooks, _, _ = _bound(calls, [RecordingCallback(calls, "cb")], RecordingDataModule(calls))
    hooks.setup("fit")
    hooks.module_on_load_checkpoint({})
    hooks.callbacks_on_load_checkpoint({})
    assert [(owner, name) for owner, name, _ in calls] == [
        ("datamodule", "setup"), ("cb", "setup"), ("module", "setup"),
        # Lightning reads a checkpoint into the module first (then its weights are loaded), then the callbacks.
        ("module", "on_load_checkpoint"), ("cb", "on_load_checkpoint")]  # a datamodule has no checkpoint hooks


def test_start_of_a_new_run_makes_events_no_ops_again():
    calls = []
    hooks, _, _ = _bound(calls, [RecordingCallback(calls, "cb")])
    hooks.start(Run())
    hooks.on_train_start()
    assert calls == []
