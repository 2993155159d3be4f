"""Probes for the constructor parameters of the callbacks added with issue 11 (used by
`tests/test_signatures_components.py`): each passes a non-default value and checks what it changes."""

import inspect

import pytest

from fulmen.callbacks import LambdaCallback
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
