"""The Strategy API a user subclass sees: step methods, backward, optimizer step, batch transfer, checkpoint
methods and `on_*` hooks, each called by the Trainer at Lightning's points. Single process, CPU.

The expected call sequence was recorded by running the same subclass under Lightning 2.6.6
(`/tmp/strategy/pl_hooks.py`): strategy hooks run after the callbacks' and the module's hook of the same name.
"""

import os

import pytest
import torch

import fulmen as L
from fulmen.plugins import Precision
from fulmen.strategies import DDPStrategy, FSDPStrategy, ParallelStrategy, SingleDeviceStrategy, Strategy
from helpers.tiny import TinyModule, make_loader, quiet_trainer


class RecordingStrategy(SingleDeviceStrategy):
    def __init__(self, events, **kwargs):
        super().__init__("cpu", **kwargs)
        self.events = events

    def training_step(self, *args, **kwargs):
        self.events.append("S.training_step")
        return super().training_step(*args, **kwargs)

    def validation_step(self, *args, **kwargs):
        self.events.append("S.validation_step")
        return super().validation_step(*args, **kwargs)

    def post_training_step(self):
        self.events.append("S.post_training_step")

    def on_train_start(self):
        self.events.append("S.on_train_start")

    def on_train_end(self):
        self.events.append("S.on_train_end")

    def on_validation_start(self):
        self.events.append("S.on_validation_start")

    def on_validation_end(self):
        self.events.append("S.on_validation_end")

    def on_train_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self.events.append(("S.on_train_batch_start", batch_idx))

    def batch_to_device(self, batch, device=None, dataloader_idx=0):
        self.events.append(("S.batch_to_device", dataloader_idx))
        return super().batch_to_device(batch, device, dataloader_idx)

    def save_checkpoint(self, checkpoint, filepath, storage_options=None):
        self.events.append("S.save_checkpoint")
        super().save_checkpoint(checkpoint, filepath, storage_options)

    def backward(self, closure_loss, optimizer, *args, **kwargs):
        self.events.append(("S.backward", type(optimizer).__name__))
        return super().backward(closure_loss, optimizer, *args, **kwargs)

    def optimizer_step(self, optimizer, closure, model=None, **kwargs):
        self.events.append(("S.optimizer_step", kwargs))
        return super().optimizer_step(optimizer, closure, model, **kwargs)


class RecordingPrecision(Precision):
    def __init__(self, events):
        self.events = events

    def train_step_context(self):
        self.events.append("P.train_step_context")
        return super().train_step_context()

    def clip_gradients(self, optimizer, clip_val=0.0, gradient_clip_algorithm="norm"):
        self.events.append(("P.clip_gradients", clip_val, str(gradient_clip_algorithm)))
        return super().clip_gradients(optimizer, clip_val, gradient_clip_algorithm)

    def pre_backward(self, tensor, module):
        self.events.append("P.pre_backward")
        return super().pre_backward(tensor, module)

    def post_backward(self, tensor, module):
        self.events.append("P.post_backward")
        return super().post_backward(tensor, module)


class HookedModule(TinyModule):
    def __init__(self, events):
        super().__init__()
        self.events = events

    def on_train_start(self):
        self.events.append("M.on_train_start")

    def on_train_batch_start(self, batch, batch_idx):
        self.events.append(("M.on_train_batch_start", batch_idx))

    def on_before_backward(self, loss):
        self.events.append("M.on_before_backward")


class StartCallback(L.Callback):
    def __init__(self, events):
        self.events = events

    def on_train_start(self, trainer, pl_module):
        self.events.append("CB.on_train_start")

    def on_validation_start(self, trainer, pl_module):
        self.events.append("CB.on_validation_start")


_ONE_STEP = [("S.batch_to_device", 0), ("M.on_train_batch_start", "i"), ("S.on_train_batch_start", "i"),
             ("S.optimizer_step", {}), "S.training_step", "P.train_step_context", "S.post_training_step",
             ("S.backward", "SGD"), "P.pre_backward", "M.on_before_backward", "P.post_backward",
             ("P.clip_gradients", 0.5, "GradClipAlgorithmType.NORM")]


def _step(index):
    return [tuple(index if part == "i" else part for part in event) if isinstance(event, tuple) else event
            for event in _ONE_STEP]


def test_a_strategy_subclass_and_precision_plugin_are_called_at_lightnings_points(tmp_path):
    events = []
    trainer = quiet_trainer(tmp_path, strategy=RecordingStrategy(events), plugins=[RecordingPrecision(events)],
                            max_steps=2, limit_val_batches=1, val_check_interval=2, num_sanity_val_steps=0,
                            gradient_clip_val=0.5, callbacks=[StartCallback(events)], enable_checkpointing=True)
    trainer.fit(HookedModule(events), make_loader(32), make_loader(16))
    assert events == ["CB.on_train_start", "M.on_train_start", "S.on_train_start", *_step(0), *_step(1),
                      "CB.on_validation_start", "S.on_validation_start", ("S.batch_to_device", 0),
                      "S.validation_step", "S.save_checkpoint", "S.on_validation_end", "S.on_train_end"]


def test_overridden_training_step_output_is_what_the_loop_trains_on(tmp_path):
    class DoublingStrategy(SingleDeviceStrategy):
        def training_step(self, *args, **kwargs):
            return super().training_step(*args, **kwargs) * 0.0  # zero loss: no update

    module = TinyModule()
    before = module.layer.weight.detach().clone()
    quiet_trainer(tmp_path, strategy=DoublingStrategy("cpu"), max_steps=2).fit(module, make_loader(32))
    assert torch.equal(before, module.layer.weight.detach())


def test_strategy_keeps_fit_optimizers_and_the_checkpoint_goes_through_its_methods(tmp_path):
    calls = []

    class Custom(SingleDeviceStrategy):
        def lightning_module_state_dict(self):
            calls.append("state_dict")
            return super().lightning_module_state_dict()

        def optimizer_state(self, optimizer):
            calls.append(("optimizer_state", type(optimizer).__name__))
            return super().optimizer_state(optimizer)

        def load_model_state_dict(self, checkpoint, strict=True):
            calls.append(("load_model_state_dict", strict))
            super().load_model_state_dict(checkpoint, strict)

        def load_optimizer_state_dict(self, checkpoint):
            calls.append("load_optimizer_state_dict")
            super().load_optimizer_state_dict(checkpoint)

        def remove_checkpoint(self, filepath):
            calls.append("remove_checkpoint")
            super().remove_checkpoint(filepath)

    strategy = Custom("cpu")
    trainer = quiet_trainer(tmp_path, strategy=strategy, max_epochs=1, limit_train_batches=2)
    module = TinyModule()
    trainer.fit(module, make_loader(32))
    assert [type(opt) for opt in strategy.optimizers] == [torch.optim.SGD]
    assert strategy.lr_scheduler_configs == trainer.lr_scheduler_configs
    assert strategy.lightning_optimizers[0].optimizer is strategy.optimizers[0]
    path = tmp_path / "manual.ckpt"
    trainer.save_checkpoint(path)
    assert calls == ["state_dict", ("optimizer_state", "SGD")]
    loaded = strategy.load_checkpoint(path)
    assert loaded["state_dict"]["layer.weight"].device.type == "cpu"
    calls.clear()
    quiet_trainer(tmp_path, strategy=Custom("cpu"), max_epochs=2, limit_train_batches=2).fit(
        TinyModule(), make_loader(32), ckpt_path=path)
    assert ("load_model_state_dict", True) in calls and "load_optimizer_state_dict" in calls
    strategy.remove_checkpoint(path)
    assert not path.exists()


def test_batch_to_device_runs_the_modules_transfer_hooks(tmp_path):
    class Module(TinyModule):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            return [batch[0] * 0 + 3, batch[1]]

    strategy = SingleDeviceStrategy("cpu")
    module = Module()
    quiet_trainer(tmp_path, strategy=strategy, max_steps=1).fit(module, make_loader(16))
    moved = strategy.batch_to_device([torch.ones(2), torch.zeros(2)], torch.device("cpu"), dataloader_idx=0)
    assert torch.equal(moved[0], torch.full((2,), 3.0))
    assert Strategy().batch_to_device(torch.ones(1)).device.type == "cpu"  # no run: a plain move


def test_on_exception_reaches_the_strategy(tmp_path):
    seen = []

    class Custom(SingleDeviceStrategy):
        def on_exception(self, exception):
            seen.append(type(exception).__name__)

    class Watcher(L.Callback):
        def on_exception(self, trainer, pl_module, exception):
            seen.append("callback")

    class Failing(TinyModule):
        def training_step(self, batch, batch_idx):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        quiet_trainer(tmp_path, strategy=Custom("cpu"), max_steps=1, callbacks=[Watcher()]).fit(
            Failing(), make_loader(16))
    assert seen == ["callback", "ValueError"]  # Lightning: callbacks, datamodule, then the strategy


def test_setup_precision_plugin_refuses_a_connect_that_replaces_the_model(tmp_path):
    class Replacing(Precision):
        def connect(self, model, optimizers, lr_schedulers):
            return torch.nn.Linear(1, 1), optimizers, lr_schedulers

    with pytest.raises(NotImplementedError, match="convert_module"):
        quiet_trainer(tmp_path, plugins=[Replacing()], max_steps=1).fit(TinyModule(), make_loader(16))


def test_accelerator_is_the_trainers_and_is_set_up(tmp_path):
    trainer = quiet_trainer(tmp_path, accelerator="cpu", max_steps=1)
    assert trainer.strategy.accelerator is trainer.accelerator
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"


def test_tensor_init_context_uses_the_device_precision_and_empty_init():
    strategy = SingleDeviceStrategy("cpu", precision_plugin=L.plugins.DoublePrecision())
    with strategy.tensor_init_context():
        layer = torch.nn.Linear(3, 3)
    assert layer.weight.dtype == torch.float64
    torch.manual_seed(0)
    with strategy.tensor_init_context(empty_init=True):
        torch.nn.init.constant_(torch.ones(2), 5.0)  # skipped: the tensor keeps its values
        kept = torch.nn.init.constant_(torch.ones(2), 5.0)
    assert torch.equal(kept, torch.ones(2, dtype=torch.float64))
    with strategy.model_sharded_context():
        pass


def test_lightning_flags_and_registry_hooks():
    strategy = SingleDeviceStrategy("cpu")
    assert strategy.restore_checkpoint_after_setup is False  # Lightning's default: weights before setup
    assert FSDPStrategy().restore_checkpoint_after_setup is True
    assert strategy.lightning_restore_optimizer is True
    assert strategy.handles_gradient_accumulation is False
    loader = make_loader(8)
    assert strategy.process_dataloader(loader) is loader
    assert strategy.reduce(torch.tensor(2.0), reduce_op="sum") == 2.0

    class Registry:
        def __init__(self):
            self.names = {}

        def register(self, name, strategy_cls, description=None, **init_params):
            self.names[name] = (strategy_cls, init_params)

    registry = Registry()
    Strategy.register_strategies(registry)
    assert registry.names == {}
    DDPStrategy.register_strategies(registry)
    assert registry.names["ddp_spawn"] == (DDPStrategy, {"start_method": "spawn"})
    assert registry.names["ddp_find_unused_parameters_true"][1]["find_unused_parameters"] is True


def test_parallel_strategy_and_ddp_extras_without_a_process_group(monkeypatch):
    for key in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    ddp = DDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
    assert isinstance(ddp, ParallelStrategy)
    assert ddp.is_distributed is True
    assert ddp.determine_ddp_device_ids() is None
    assert ddp.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}
    ddp.set_world_ranks()
    assert ddp.cluster_environment.world_size() == 2 and ddp.cluster_environment.global_rank() == 0
    assert ddp.all_gather(torch.tensor(1.0)) == 1.0  # no process group: the tensor itself
    assert ddp.reduce_boolean_decision(True) is True
    with ddp.block_backward_sync():
        pass
    ddp.reconciliate_processes("trace")


def test_lightning_optimizer_toggle_model_and_do_nothing_closure(tmp_path):
    from fulmen.core.optimizer import LightningOptimizer, do_nothing_closure

    assert do_nothing_closure() is None
    seen = {}

    class TwoOptimizers(TinyModule):
        def __init__(self):
            super().__init__()
            self.other = torch.nn.Linear(2, 2)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            first, second = self.optimizers()
            with first.toggle_model(sync_grad=False):
                seen["inside"] = [p.requires_grad for p in self.other.parameters()]
                loss = self.loss(batch)
                self.manual_backward(loss)
            seen["after"] = [p.requires_grad for p in self.other.parameters()]
            first.step()
            first.zero_grad()

        def configure_optimizers(self):
            return (torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.other.parameters(), lr=0.1))

    quiet_trainer(tmp_path, max_steps=1).fit(TwoOptimizers(), make_loader(16))
    assert seen == {"inside": [False, False], "after": [True, True]}
    with pytest.raises(RuntimeError, match="not attached to a strategy"):
        LightningOptimizer(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)).step()


def test_process_dataloader_override_sees_and_replaces_every_loader(tmp_path):
    seen = []

    class Halving(SingleDeviceStrategy):
        def process_dataloader(self, dataloader):
            seen.append(len(dataloader))
            return torch.utils.data.DataLoader(dataloader.dataset, batch_size=dataloader.batch_size * 2)

    trainer = quiet_trainer(tmp_path, strategy=Halving("cpu"), max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(TinyModule(), make_loader(32), make_loader(16))
    assert seen == [4, 2]
    assert trainer.num_training_batches == 2 and trainer.num_val_batches == [1]


def test_ddp_reduce_takes_lightnings_names_and_reduce_ops(monkeypatch):
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op=None, group=None: calls.append(op)
                        or tensor.mul_(2))  # as if the other rank held the same value
    strategy = DDPStrategy(parallel_devices=[torch.device("cpu")] * 2)
    assert strategy.reduce(tensor=torch.tensor(3.0), reduce_op=dist.ReduceOp.SUM) == 6.0
    assert strategy.reduce(torch.tensor(3.0), reduce_op="mean") == 3.0
    assert calls == [dist.ReduceOp.SUM, dist.ReduceOp.SUM]
    with pytest.raises(ValueError, match="reduce_op"):
        strategy.reduce(torch.tensor(1.0), reduce_op="median")
