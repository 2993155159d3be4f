"""The hook vocabulary: which events exist, who receives each, and the declared no-op for every event.

`HookEvents` declares every event `HookDispatch.bind` builds, as a no-op: an event called before a run is
bound does nothing, and readers (and tools) see every event here rather than as attributes set at run time.
"""

from __future__ import annotations

from typing import Any

from fulmen.trainer.stages import DATA_STAGES, STAGES

# Events where every overriding callback runs, then the module's hook (if overridden).
CALLBACK_THEN_MODULE = (
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end",
    "on_train_epoch_start", "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_test_batch_start", "on_test_batch_end",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end",
    "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
)
# Events only callbacks have.
CALLBACK_ONLY = ("on_sanity_check_start", "on_sanity_check_end")
# Module hooks without a callback twin whose default does nothing: skipped unless overridden.
MODULE_ONLY = ("configure_model", "configure_sharded_model")
# Module hooks with a default that acts: always called.
MODULE_ACTING = (
    "on_validation_model_zero_grad", "configure_optimizers", "configure_callbacks",
    "optimizer_step", "optimizer_zero_grad", "backward", "lr_scheduler_step", "configure_gradient_clipping",
)
DATA_HOOKS = tuple(STAGES[stage].dataloader_hook for stage in DATA_STAGES)
STEP_METHODS = tuple(STAGES[stage].step_method for stage in DATA_STAGES)
# Eval/train-mode hooks (`stages.STAGES`): the loop's model is put in eval mode, then restored to the exact
# train/eval mode of every submodule it had, unless the user overrides the restoring hook.
_MODE_HOOKS = tuple(name for stage in DATA_STAGES for name in (STAGES[stage].model_eval, STAGES[stage].model_train)
                    if name is not None)
REMOVED_HOOKS = {
    "training_epoch_end": "on_train_epoch_end", "validation_epoch_end": "on_validation_epoch_end",
    "test_epoch_end": "on_test_epoch_end", "predict_epoch_end": "on_predict_epoch_end",
    "training_step_end": "training_step", "validation_step_end": "validation_step",
    "test_step_end": "test_step", "on_epoch_start": "on_train_epoch_start",
    "on_epoch_end": "on_train_epoch_end", "on_batch_start": "on_train_batch_start",
    "on_batch_end": "on_train_batch_end",
}


EVENTS = CALLBACK_THEN_MODULE + CALLBACK_ONLY + MODULE_ONLY + MODULE_ACTING + STEP_METHODS + ("on_train_epoch_end",)


def noop(*args: Any, **kwargs: Any) -> None:
    return None


class HookEvents:
    """Every event the loops call, declared; `HookDispatch.bind` replaces each with the run's prebuilt function."""

    # Fit, train, sanity check.
    on_fit_start = on_fit_end = on_train_start = on_train_end = staticmethod(noop)
    on_train_epoch_start = on_train_epoch_end = on_train_batch_start = on_train_batch_end = staticmethod(noop)
    on_sanity_check_start = on_sanity_check_end = staticmethod(noop)
    # Validation, test, predict.
    on_validation_start = on_validation_end = on_validation_epoch_start = on_validation_epoch_end = staticmethod(noop)
    on_validation_batch_start = on_validation_batch_end = on_validation_model_zero_grad = staticmethod(noop)
    on_test_start = on_test_end = on_test_epoch_start = on_test_epoch_end = staticmethod(noop)
    on_test_batch_start = on_test_batch_end = staticmethod(noop)
    on_predict_start = on_predict_end = on_predict_epoch_start = on_predict_epoch_end = staticmethod(noop)
    on_predict_batch_start = on_predict_batch_end = staticmethod(noop)
    # Optimization.
    on_before_backward = on_after_backward = on_before_optimizer_step = on_before_zero_grad = staticmethod(noop)
    configure_optimizers = optimizer_step = optimizer_zero_grad = backward = staticmethod(noop)
    lr_scheduler_step = configure_gradient_clipping = staticmethod(noop)
    # Model set-up.
    configure_callbacks = configure_model = configure_sharded_model = staticmethod(noop)
    # Step methods (run through the strategy).
    training_step = validation_step = test_step = predict_step = staticmethod(noop)


HOOK_NAMES = frozenset(CALLBACK_THEN_MODULE + CALLBACK_ONLY + MODULE_ONLY + MODULE_ACTING + DATA_HOOKS
                       + STEP_METHODS + _MODE_HOOKS
                       + ("on_train_epoch_end", "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
                          "prepare_data", "setup", "teardown", "on_exception", "on_save_checkpoint",
                          "on_load_checkpoint"))
