"""Tuning trials: the current run's stage run again inside it, with the user's state put back afterwards.

The Trainer's seam for `fulmen.tuner` (the one place outside `trainer.py` that swaps the Trainer's run);
the tuner reaches the Trainer's internals only through this file.

The tuner runs inside a user's `fit`/`validate`/... (from a callback hook, as Lightning's does). Each trial is
a fresh `Run` with its own callbacks, data and loop, on the same module, optimizers and `TrainerState`; no
logger sees it. Leaving the `Trial` puts back, exactly, what the trials changed: weights, gradients, train/eval
modes, optimizer, scheduler and precision states, the counters, the overridden flags, published metrics, the RNG
streams, and the user's run with its hook binding. Nothing is written to disk (Lightning goes through a temporary
checkpoint file instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import Any

import torch

from fulmen.results.result_collection import ResultCollection
from fulmen.trainer.data_source import DataSource
from fulmen.trainer.run import Run
from fulmen.trainer.stages import STAGE_OF_FN
from fulmen.trainer.state import TrainerFn
from fulmen.utilities.seed import capture_rng_states, restore_rng_states


class Trial:
    """`with Trial(trainer, callbacks, flags) as trial: trial.run()` — runs the current stage's loop, isolated.

    Args:
        trainer: the Trainer, inside a running `fit`/`validate`/`test`/`predict`.
        callbacks: the only callbacks the trials see.
        flags: Trainer flags the trials run under (e.g. `max_steps`), set back afterwards.
        from_step_zero: trials start at epoch 0, step 0 (else at the counters of the user's run).
    """

    def __init__(self, trainer: Any, callbacks: list[Any], flags: dict[str, Any], from_step_zero: bool = False) -> None:
        self.trainer = trainer
        self.from_step_zero = from_step_zero
        self.callbacks = callbacks
        self.flags = flags
        self.run_state: Run | None = None  # the latest trial's run (its dataloaders, batch counts)

    def __enter__(self) -> Trial:
        trainer = self.trainer
        self._user_run, self._user_data = trainer._current, trainer._data
        self._counters = dataclasses.replace(trainer._state)
        config = trainer._config
        self._user_flags = {name: getattr(config, name) for name in self.flags}
        for name, value in self.flags.items():
            setattr(config, name, value)
        metrics = trainer._metrics
        self._metrics = {key: dict(value) if isinstance(value, dict) else value for key, value in vars(metrics).items()}
        metrics.loggers = []
        module = self._user_run.module
        self._weights = {key: value.detach().clone() for key, value in module.state_dict().items()}
        self._grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in module.parameters()]
        self._modes = [(submodule, submodule.training) for submodule in module.modules()]
        optimization = trainer._optimization
        self._optimization = dict(vars(optimization))
        self._optimizer_states = [deepcopy(optimizer.state_dict()) for optimizer in optimization.optimizers]
        self._scheduler_states = [deepcopy(config.scheduler.state_dict()) for config in optimization.scheduler_configs]
        precision = trainer.strategy.precision_plugin
        self._precision_state = deepcopy(precision.state_dict())
        self._rng = capture_rng_states()
        return self

    def run(self) -> Any:
        """One trial: a fresh run (the dataloaders are requested again) from the counters at entry."""
        trainer = self.trainer
        user = self._user_run
        run = Run(fn=user.fn, module=user.module, datamodule=user.datamodule, callbacks=list(self.callbacks),
                  given_loaders=user.given_loaders)
        self.run_state = trainer._current = run
        state, counters = trainer._state, self._counters
        state.current_epoch, state.global_step = (0, 0) if self.from_step_zero else (counters.current_epoch,
                                                                                    counters.global_step)
        state.batches_that_stepped, state.should_stop = counters.batches_that_stepped, False
        state.stage = STAGE_OF_FN[user.fn]
        hooks = trainer._hooks
        hooks.start(run)
        hooks.bind()
        trainer._data = DataSource(run, hooks, trainer._config, trainer.strategy, trainer.use_distributed_sampler)
        metrics = trainer._metrics
        metrics.train_results, metrics.eval_results = ResultCollection(training=True), ResultCollection(training=False)
        metrics.start_run(run)
        return trainer._run_stage(user.fn, False)

    @property
    def optimization(self) -> Any:
        """The run's `Optimization` (a trial may swap its schedulers; they come back on exit)."""
        return self.trainer._optimization

    def trial_loaders(self) -> list[Any]:
        """The dataloaders the latest trial used for its stage (none before a trial)."""
        run = self.run_state
        return [] if run is None else flat_loaders(run.dataloaders.get(STAGE_OF_FN[run.fn]))

    def __exit__(self, *exc_info: Any) -> None:
        trainer = self.trainer
        module = self._user_run.module
        with torch.no_grad():
            module.load_state_dict(self._weights)
        for param, grad in self._grads:
            param.grad = grad
        for submodule, training in self._modes:
            submodule.training = training
        optimization = trainer._optimization
        vars(optimization).update(self._optimization)
        for optimizer, state in zip(optimization.optimizers, self._optimizer_states):
            optimizer.load_state_dict(state)
        for config, state in zip(optimization.scheduler_configs, self._scheduler_states):
            config.scheduler.load_state_dict(state)
        trainer.strategy.precision_plugin.load_state_dict(self._precision_state)
        vars(trainer._state).update(vars(self._counters))
        for name, value in self._user_flags.items():
            setattr(trainer._config, name, value)
        vars(trainer._metrics).update(self._metrics)
        trainer._current, trainer._data = self._user_run, self._user_data
        hooks = trainer._hooks
        hooks.start(self._user_run)
        hooks.bind()
        restore_rng_states(self._rng)


def flat_loaders(shaped: Any) -> list[Any]:
    """The dataloaders in a stage's loaders as given (one, or a list/tuple/dict of them)."""
    if isinstance(shaped, dict):
        return list(shaped.values())
    if isinstance(shaped, (list, tuple)):
        return list(shaped)
    return [] if shaped is None else [shaped]


def stage_loaders(trainer: Any) -> list[Any]:
    """The dataloaders the running call has requested so far for its own stage."""
    run = trainer._current
    return flat_loaders(run.dataloaders.get(STAGE_OF_FN[run.fn]))


def given_loaders(trainer: Any) -> dict[str, Any]:
    """The dataloaders passed to the running call, by stage (the rest come from dataloader hooks)."""
    return trainer._current.given_loaders


def request_data_again(trainer: Any) -> None:
    """After a trial changed what the dataloaders produce (the batch size): the running call requests again what it
    has requested so far. A running training epoch finishes on its loader; the next epoch uses the new one."""
    run = trainer._current
    if run.fn == TrainerFn.FITTING:
        if run.train_loader is not None:
            trainer._data.train_loader(reload=True)
        if run.fit_loop is not None and run.fit_loop.val_loop.loaders:
            run.fit_loop.val_loop.setup_data()
    elif run.fn == TrainerFn.PREDICTING:
        if run.predict_loop is not None:
            run.predict_loop.request_again()
    elif run.evaluation_loop is not None and run.evaluation_loop.loaders:
        run.evaluation_loop.setup_data()


@contextmanager
def first_callback(trainer: Any, callback: Any) -> Iterator[None]:
    """Run the block with `callback` first among the Trainer's callbacks; afterwards the list is as it was."""
    original = list(trainer._callbacks)
    trainer.callbacks = [callback, *original]
    try:
        yield
    finally:
        trainer._callbacks = original
        current = trainer._current
        current.callbacks = [each for each in current.callbacks if each is not callback]
