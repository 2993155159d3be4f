"""The loops built from their collaborators alone, with no Trainer: each runs a tiny stage, and we check what it did.

Real `HookDispatch`, `DataSource`, `MetricsRouter`, `Strategy` and `TrainerState`; the object callbacks receive
as their first argument is a plain stand-in, and so are the optimizer holder and the scheduler stepping.
"""

import signal
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.loops.evaluation_loop import EvaluationLoop
from fulmen.loops.fit_loop import FitLoop
from fulmen.loops.prediction_loop import PredictionLoop
from fulmen.results.metrics_router import MetricsRouter
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.trainer.config import TrainerConfig
from fulmen.trainer.data_source import DataSource
from fulmen.trainer.hook_dispatch import HookDispatch
from fulmen.trainer.run import Run
from fulmen.trainer.signals import GracefulStop, SignalStop
from fulmen.trainer.state import RunningStage, TrainerFn, TrainerState
from helpers.tiny import RandomDataset, TinyModule, make_loader


class Recorder(L.Callback):
    """Records the hooks called on it (with the batch index where there is one) and what it received."""

    def __init__(self):
        self.calls = []
        self.owners = set()

    def _record(self, name, trainer, *args):
        self.owners.add(id(trainer))
        self.calls.append(name)

    def on_train_start(self, trainer, pl_module):
        self._record("on_train_start", trainer)

    def on_train_epoch_start(self, trainer, pl_module):
        self._record("on_train_epoch_start", trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record(f"on_train_batch_end({batch_idx})", trainer)

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self._record("on_before_zero_grad", trainer)

    def on_validation_start(self, trainer, pl_module):
        self._record("on_validation_start", trainer)

    def on_validation_end(self, trainer, pl_module):
        self._record("on_validation_end", trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._record("on_train_epoch_end", trainer)

    def on_train_end(self, trainer, pl_module):
        self._record("on_train_end", trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record(f"on_test_batch_end({batch_idx})", trainer)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record(f"on_predict_batch_end({batch_idx})", trainer)


class PlainOptimization:
    """What the fit loop uses of `Optimization`: the optimizer (as hooks receive it too) and backward."""

    def __init__(self, module):
        self.optimizers = self.wrapped_optimizers = [torch.optim.SGD(module.parameters(), lr=0.1)]

    def backward(self, loss):
        loss.backward()


def _collaborators(fn, module, loaders, callbacks=(), **flags):
    """A run of `fn` on `module` with the given loaders (by stage), and the collaborators the loops take.

    The module's and callbacks' `trainer` is a stand-in with what their default hooks read.
    """
    config = TrainerConfig.from_flags(**flags)
    strategy = SingleDeviceStrategy("cpu")
    run = Run(fn=fn, module=module, callbacks=list(callbacks), given_loaders=loaders)
    owner = SimpleNamespace(lightning_module=module, local_rank=0, global_rank=0)
    module.trainer = owner
    hooks = HookDispatch(owner, strategy)
    hooks.start(run)
    strategy.connect(module)
    hooks.bind()
    state = TrainerState(fn=fn, stage=None)
    metrics = MetricsRouter(state, strategy, [], log_every_n_steps=50)
    metrics.start_run(run)
    data = DataSource(run, hooks, config, strategy, use_distributed_sampler=False)
    return SimpleNamespace(owner=owner, run=run, state=state, config=config, hooks=hooks,
                           metrics=metrics, strategy=strategy, data=data)


def _fit_loop(parts, received=None, saved=None):
    """A FitLoop over `parts`, recording scheduler stepping and signal checkpoints instead of doing them."""
    parts.state.stage = RunningStage.TRAINING
    parts.scheduler_calls, parts.signal_saves = [], []
    signals = GracefulStop()
    signals.received = received

    def save():
        parts.signal_saves.append(parts.state.global_step)
        return "signal.ckpt"

    def step_schedulers(interval, batch_idx, plateau=False, skip=False):
        parts.scheduler_calls.append((interval, batch_idx, plateau, skip))

    parts.run.resume = saved
    val_loop = EvaluationLoop(parts.run, parts.state, parts.config, parts.hooks, parts.metrics, parts.strategy,
                              parts.data, "validate")
    optimization = PlainOptimization(parts.run.module)
    return FitLoop(parts.run, parts.state, parts.config, parts.hooks, parts.metrics, optimization, parts.strategy,
                   parts.data, val_loop, SignalStop(signals, parts.strategy, parts.state, save), step_schedulers)


def test_fit_loop_trains_and_validates_an_epoch_without_a_trainer():
    module, recorder = TinyModule(), Recorder()
    before = module.layer.weight.detach().clone()
    parts = _collaborators(TrainerFn.FITTING, module, {"train": make_loader(32), "validate": make_loader(16)},
                           [recorder], max_epochs=1, num_sanity_val_steps=0)
    loop = _fit_loop(parts)
    loop.run()

    assert (parts.state.current_epoch, parts.state.global_step, parts.state.batches_that_stepped) == (1, 4, 4)
    assert (parts.run.num_training_batches, parts.run.num_val_batches) == (4, [2])
    assert module.calls == {"training_step": 4, "validation_step": 2}
    assert not torch.equal(module.layer.weight, before)  # the optimizer stepped
    assert recorder.owners == {id(parts.owner)}
    # validation runs inside the last batch, before on_train_epoch_end (Lightning's order)
    assert recorder.calls == ["on_train_start", "on_train_epoch_start",
                              "on_before_zero_grad", "on_train_batch_end(0)", "on_before_zero_grad",
                              "on_train_batch_end(1)", "on_before_zero_grad", "on_train_batch_end(2)",
                              "on_before_zero_grad", "on_train_batch_end(3)", "on_validation_start",
                              "on_validation_end", "on_train_epoch_end", "on_train_end"]
    assert parts.state.stage == RunningStage.TRAINING  # validation switched the stage back
    assert parts.signal_saves == []


def test_fit_loop_accumulates_and_steps_the_incomplete_last_window():
    module, recorder = TinyModule(), Recorder()
    parts = _collaborators(TrainerFn.FITTING, module, {"train": make_loader(32)}, [recorder], max_epochs=1,
                           accumulate_grad_batches=3)
    loop = _fit_loop(parts)
    loop.run()

    # 4 batches in windows of 3: steps after batch 2 and after the incomplete last window (batch 3)
    assert (parts.state.global_step, parts.state.batches_that_stepped) == (2, 2)
    assert [call for call in recorder.calls if call.startswith("on_before_zero")] == ["on_before_zero_grad"] * 2
    assert parts.scheduler_calls == [
        ("step", 0, True, True), ("step", 1, True, True),  # plateau schedulers skip accumulating batches
        ("step", 2, False, False), ("step", 2, True, False),
        ("step", 3, False, False), ("epoch", 3, False, False), ("step", 3, True, False),
        ("epoch", 3, True, False),  # after on_train_epoch_end
    ]


def test_fit_loop_saves_and_stops_when_a_signal_arrived():
    module = TinyModule()
    parts = _collaborators(TrainerFn.FITTING, module, {"train": make_loader(32)}, max_epochs=3, min_epochs=2)
    loop = _fit_loop(parts, received=signal.SIGTERM)
    loop.run()

    # the signal overrides min_epochs: one optimizer step, one checkpoint, then the epoch ends
    assert parts.signal_saves == [1]
    assert (parts.state.global_step, parts.state.current_epoch, parts.state.should_stop) == (1, 1, True)


def test_fit_loop_resumes_mid_epoch_in_the_same_batch_order():
    def shuffled():
        return DataLoader(RandomDataset(48), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(7))

    class Capture(L.Callback):
        """Remembers the inputs of every trained batch, and the loop state after batch 2 of epoch 1."""

        def __init__(self):
            self.seen, self.saved = [], None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seen.append((parts.state.current_epoch, batch_idx, batch[0].sum().item()))
            if (parts.state.current_epoch, batch_idx) == (1, 2):
                self.saved = {**parts.state.state_dict(), **loop.resume_state()}

    full = Capture()
    parts = _collaborators(TrainerFn.FITTING, TinyModule(), {"train": shuffled()}, [full], max_epochs=2)
    loop = _fit_loop(parts)
    loop.run()
    assert (full.saved["phase"], full.saved["batches_done"], full.saved["global_step"]) == ("batch_end", 3, 9)

    resumed = Capture()
    parts = _collaborators(TrainerFn.FITTING, TinyModule(), {"train": shuffled()}, [resumed], max_epochs=2)
    parts.state.load_state_dict(full.saved)
    loop = _fit_loop(parts, saved=full.saved)
    loop.run()

    # only the batches after the checkpoint ran, in the order the uninterrupted run drew them
    assert resumed.seen == full.seen[6 + 3:]
    assert (parts.state.current_epoch, parts.state.global_step, parts.state.batches_that_stepped) == (2, 12, 12)
    assert loop.total_batch_idx == 12


def test_evaluation_loop_tests_without_a_trainer():
    module, recorder = TinyModule(), Recorder()
    parts = _collaborators(TrainerFn.TESTING, module, {"test": make_loader(24)}, [recorder])
    parts.state.stage = RunningStage.TESTING
    loop = EvaluationLoop(parts.run, parts.state, parts.config, parts.hooks, parts.metrics, parts.strategy,
                          parts.data, "test")
    loop.setup_data()
    results = loop.run(loop.num_batches)

    assert results == [{}]  # one (empty) metrics dict per dataloader: nothing was logged
    assert parts.run.num_test_batches == [3]
    assert module.calls == {"test_step": 3}
    assert recorder.calls == ["on_test_batch_end(0)", "on_test_batch_end(1)", "on_test_batch_end(2)"]
    assert module.training  # train mode restored afterwards


@pytest.mark.parametrize("return_predictions", [True, False])
def test_prediction_loop_predicts_without_a_trainer(return_predictions):
    class Predicting(TinyModule):
        def predict_step(self, batch, batch_idx):
            return self(batch)

    module, recorder = Predicting(), Recorder()
    parts = _collaborators(TrainerFn.PREDICTING, module, {"predict": make_loader(16, targets=False)}, [recorder],
                           limit_predict_batches=1)
    predictions = PredictionLoop(parts.run, parts.config, parts.hooks, parts.strategy, parts.data,
                                 return_predictions).run()

    assert parts.run.num_predict_batches == [1]
    assert recorder.calls == ["on_predict_batch_end(0)"]
    if return_predictions:
        assert len(predictions) == 1 and predictions[0].shape == (8, 2)
    else:
        assert predictions is None
