"""Probes for the constructor parameters of the callbacks added with issue 11 (used by
`tests/test_signatures_components.py`): each passes a non-default value and checks what it changes."""

import inspect
import os

import pytest

from fulmen.callbacks import BasePredictionWriter, LambdaCallback, OnExceptionCheckpoint, Timer
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import WithDataHooks, make_loader, quiet_trainer


class _Failing(WithDataHooks):
    def training_step(self, batch, batch_idx):
        raise RuntimeError("probe failure")


def _lambda_hook_runs(tmp, name):
    """Give only hook `name` to a LambdaCallback, run the entry point that reaches it, and say whether it ran."""
    calls = []
    callback = LambdaCallback(**{name: lambda *args, **kwargs: calls.append(name)})
    trainer = quiet_trainer(tmp, max_epochs=1, callbacks=[callback], num_sanity_val_steps=1)
    if "test" in name:
        trainer.test(WithDataHooks())
    elif "predict" in name:
        trainer.predict(WithDataHooks())
    elif name == "on_exception":
        with pytest.raises(RuntimeError, match="probe failure"):
            trainer.fit(_Failing())
    elif name == "on_load_checkpoint":
        path = tmp / "probe.ckpt"
        first = quiet_trainer(tmp, max_epochs=1)
        first.fit(WithDataHooks())
        first.save_checkpoint(path)
        quiet_trainer(tmp, max_epochs=2, callbacks=[callback]).fit(WithDataHooks(), ckpt_path=path)
    elif name == "on_save_checkpoint":
        trainer.fit(WithDataHooks())
        trainer.save_checkpoint(tmp / "probe.ckpt")
    else:
        trainer.fit(WithDataHooks(), make_loader(16), make_loader(16))
    return bool(calls) and set(calls) == {name}


LAMBDA_CALLBACK = {name: (lambda tmp, name=name: _lambda_hook_runs(tmp, name))
                   for name in inspect.signature(LambdaCallback).parameters}


def _steps_under_timer(tmp, monkeypatch, **options):
    """Fit 4 batches x 3 epochs on a fake clock where each training batch takes 10 s; return the steps trained."""
    import fulmen.callbacks.timer as timer_module

    now = [0.0]
    monkeypatch.setattr(timer_module.time, "monotonic", lambda: now[0])
    tick = LambdaCallback(on_train_batch_end=lambda *args: now.__setitem__(0, now[0] + 10))
    trainer = quiet_trainer(tmp, max_epochs=3, callbacks=[tick, Timer(**options)])
    trainer.fit(WithDataHooks(), make_loader(32))
    return trainer.global_step


def _timer_verbose(tmp, monkeypatch, caplog):
    with caplog.at_level("INFO"):
        _steps_under_timer(tmp, monkeypatch, duration={"seconds": 5}, verbose=False)
    quiet = "Time limit reached" not in caplog.text
    with caplog.at_level("INFO"):
        _steps_under_timer(tmp, monkeypatch, duration={"seconds": 5})
    return quiet and "Time limit reached" in caplog.text


TIMER = {
    "duration": lambda tmp, mp, caplog: _steps_under_timer(tmp, mp, duration="00:00:00:25") == 3
    and _steps_under_timer(tmp, mp) == 12,
    "interval": lambda tmp, mp, caplog: _steps_under_timer(tmp, mp, duration={"seconds": 25}, interval="epoch") == 4
    and "step" in str(pytest.raises(MisconfigurationException, Timer, interval="batch").value),
    "verbose": _timer_verbose,
}


def _exception_files(tmp, **options):
    """Fail a fit under an OnExceptionCheckpoint; return the files left in its directory."""
    callback = OnExceptionCheckpoint(**options)
    with pytest.raises(RuntimeError, match="probe failure"):
        quiet_trainer(tmp, max_epochs=1, callbacks=[callback], enable_checkpointing=True).fit(_Failing())
    return sorted(os.listdir(callback.dirpath))


ON_EXCEPTION_CHECKPOINT = {
    "dirpath": lambda tmp: _exception_files(tmp, dirpath=tmp / "elsewhere") == ["on_exception.ckpt"],
    "filename": lambda tmp: _exception_files(tmp, dirpath=tmp / "ft", filename="crash") == ["crash.ckpt"],
}


def _writes(tmp, write_interval):
    """Predict 2 batches under a writer with `write_interval`; return which write methods ran and how often."""
    calls = []

    class Writer(BasePredictionWriter):
        def write_on_batch_end(self, *args):
            calls.append("batch")

        def write_on_epoch_end(self, *args):
            calls.append("epoch")

    quiet_trainer(tmp, callbacks=[Writer(write_interval)]).predict(WithDataHooks())
    return calls


PREDICTION_WRITER = {
    "write_interval": lambda tmp: _writes(tmp, "batch") == ["batch", "batch"] and _writes(tmp, "epoch") == ["epoch"]
    and _writes(tmp, "batch_and_epoch") == ["batch", "batch", "epoch"],
}
