"""Checkpointing built without a Trainer: dump a tiny module's run to a file and restore it into a fresh one."""

from types import SimpleNamespace

import torch

from fulmen.callbacks import Callback
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.trainer.checkpointing import Checkpointing
from fulmen.trainer.hook_dispatch import HookDispatch
from fulmen.trainer.run import Run
from fulmen.trainer.state import TrainerFn, TrainerState
from helpers.module_fixtures import LinearModule


class Counter(Callback):
    def __init__(self, count=0):
        self.count = count

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state_dict):
        self.count = state_dict["count"]


def _parts(state):
    module = LinearModule()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimization = SimpleNamespace(optimizers=[optimizer], scheduler_configs=[SimpleNamespace(scheduler=scheduler)])
    strategy = SingleDeviceStrategy()
    hooks = HookDispatch(SimpleNamespace(local_rank=0, global_rank=0), strategy)
    run = Run(fn=TrainerFn.FITTING, module=module, callbacks=[Counter()])
    hooks.start(run)
    strategy.connect(module)
    hooks.bind()
    return Checkpointing(state, hooks, strategy, optimization), run, optimizer, scheduler


def test_dump_and_restore_without_a_trainer(tmp_path):
    state = TrainerState(current_epoch=3, global_step=12, batches_that_stepped=12)
    checkpointing, run, optimizer, scheduler = _parts(state)
    run.callbacks[0].count = 5
    run.module(torch.ones(4, 32)).sum().backward()
    optimizer.step()
    scheduler.step()
    path = tmp_path / "unit.ckpt"
    checkpointing.save(run, path)

    fresh_state = TrainerState()
    restoring, fresh_run, fresh_optimizer, fresh_scheduler = _parts(fresh_state)
    restore = restoring.restore_from(fresh_run, path, weights_only=None)
    with restore.around_setup():  # first half: weights and callback states (before `configure_optimizers`)
        pass
    for saved, restored in zip(run.module.state_dict().values(), fresh_run.module.state_dict().values()):
        torch.testing.assert_close(restored, saved)
    assert fresh_run.callbacks[0].count == 5
    assert fresh_state.global_step == 0 and not fresh_optimizer.state  # counters and optimizers come with `finish`
    assert fresh_run.ckpt_path == str(path)
    restore.finish()

    momentum = [fresh_optimizer.state[p]["momentum_buffer"] for p in fresh_run.module.parameters()]
    expected = [optimizer.state[p]["momentum_buffer"] for p in run.module.parameters()]
    for restored, saved in zip(momentum, expected):
        torch.testing.assert_close(restored, saved)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert (fresh_state.current_epoch, fresh_state.global_step, fresh_state.batches_that_stepped) == (3, 12, 12)
    assert fresh_run.callbacks[0].count == 5
    assert fresh_run.resume is None  # saved between epochs: nothing for the fit loop to continue


def test_weights_only_dump_has_no_optimizer_state():
    checkpointing, run, _, _ = _parts(TrainerState(global_step=2))
    checkpoint = checkpointing.dump(run, weights_only=True)
    assert checkpoint["global_step"] == 2
    assert "optimizer_states" not in checkpoint and "lr_schedulers" not in checkpoint
    assert set(checkpoint["state_dict"]) == set(run.module.state_dict())
