"""LambdaCallback: each hook given by keyword is called with the hook's arguments, in Lightning's order."""

import inspect

import pytest

from fulmen.callbacks import Callback, LambdaCallback
from fulmen.callbacks.lambda_function import LambdaCallback as FromModule
from helpers.tiny import WithDataHooks, make_loader, quiet_trainer


class Failing(WithDataHooks):
    def training_step(self, batch, batch_idx):
        raise RuntimeError("boom")


def recording_callback():
    seen = []
    names = list(inspect.signature(LambdaCallback).parameters)

    def recorder(name):
        return lambda *args, **kwargs: seen.append((name, len(args), sorted(kwargs)))

    return LambdaCallback(**{name: recorder(name) for name in names}), seen


# Recorded from Lightning 2.6.6 with the same script: `(hook, positional args, keyword names)`.
FIT = [("setup", 2, ["stage"]), ("on_fit_start", 2, []), ("on_sanity_check_start", 2, []),
       ("on_validation_start", 2, []), ("on_validation_epoch_start", 2, []), ("on_validation_batch_start", 4, []),
       ("on_validation_batch_end", 5, []), ("on_validation_epoch_end", 2, []), ("on_validation_end", 2, []),
       ("on_sanity_check_end", 2, []), ("on_train_start", 2, []), ("on_train_epoch_start", 2, [])]
TRAIN_BATCH = [("on_train_batch_start", 4, []), ("on_before_zero_grad", 3, []), ("on_before_backward", 3, []),
               ("on_after_backward", 2, []), ("on_before_optimizer_step", 3, []), ("on_train_batch_end", 5, [])]
VALIDATION = [("on_validation_start", 2, []), ("on_validation_epoch_start", 2, []),
              ("on_validation_batch_start", 4, []), ("on_validation_batch_end", 5, []),
              ("on_validation_epoch_end", 2, []), ("on_validation_end", 2, [])]
FIT_END = [("on_train_epoch_end", 2, []), ("on_train_end", 2, []), ("on_fit_end", 2, []), ("teardown", 2, ["stage"])]
PREDICT = [("setup", 2, ["stage"]), ("on_predict_start", 2, []), ("on_predict_epoch_start", 2, []),
           ("on_predict_batch_start", 4, []), ("on_predict_batch_end", 5, []), ("on_predict_batch_start", 4, []),
           ("on_predict_batch_end", 5, []), ("on_predict_epoch_end", 2, []), ("on_predict_end", 2, []),
           ("teardown", 2, ["stage"])]


def test_every_hook_is_called_in_lightnings_order(tmp_path):
    callback, seen = recording_callback()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback], num_sanity_val_steps=1, limit_val_batches=1)
    module = WithDataHooks()
    trainer.fit(module, make_loader(16, batch_size=8), make_loader(16))
    assert seen == FIT + TRAIN_BATCH * 2 + VALIDATION + FIT_END
    seen.clear()
    trainer.predict(module)
    assert seen == PREDICT


def test_test_checkpoint_and_exception_hooks(tmp_path):
    callback, seen = recording_callback()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback], limit_test_batches=1)
    module = WithDataHooks()
    trainer.test(module)
    assert [name for name, _, _ in seen] == ["setup", "on_test_start", "on_test_epoch_start", "on_test_batch_start",
                                             "on_test_batch_end", "on_test_epoch_end", "on_test_end", "teardown"]
    seen.clear()
    trainer.fit(module, make_loader(16))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert ("on_save_checkpoint", 3, []) in seen
    seen.clear()
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[callback])
    trainer.fit(module, make_loader(16), ckpt_path=tmp_path / "model.ckpt")
    assert ("on_load_checkpoint", 3, []) in seen
    seen.clear()
    with pytest.raises(RuntimeError, match="boom"):
        quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback]).fit(Failing(), make_loader(16))
    exceptions = [args for name, *args in seen if name == "on_exception"]
    assert exceptions == [[3, []]]


def test_hooks_receive_the_trainer_module_and_hook_arguments(tmp_path):
    received = {}
    callback = LambdaCallback(
        setup=lambda trainer, pl_module, stage: received.setdefault("setup", (trainer, pl_module, stage)),
        on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: received.setdefault(
            "batch_end", (outputs["loss"].ndim, batch_idx)),
    )
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback])
    module = WithDataHooks()
    trainer.fit(module)
    assert received["setup"] == (trainer, module, "fit")
    assert received["batch_end"] == (0, 0)


def test_hooks_not_given_stay_the_base_class_hooks():
    callback = LambdaCallback(on_fit_start=print)
    assert isinstance(callback, Callback) and LambdaCallback is FromModule
    assert callback.on_fit_start is print
    assert callback.on_fit_end.__func__ is Callback.on_fit_end


def test_unknown_hook_name_is_rejected():
    with pytest.raises(TypeError, match="on_foo"):
        LambdaCallback(on_foo=lambda *args: None)


def test_a_hook_that_is_not_callable_is_rejected():
    with pytest.raises(TypeError, match="on_fit_start=.*needs a function"):
        LambdaCallback(on_fit_start=3)
