"""Where `self.log` may be called, and its `on_step`/`on_epoch` defaults per hook (Lightning's table).

Owns: the table and the checks of `self.log` arguments against it. Nothing here touches values.
"""

from __future__ import annotations

from typing import NamedTuple

from fulmen.utilities.exceptions import MisconfigurationException


class LogOptions(NamedTuple):
    allowed_on_step: tuple[bool, ...]
    allowed_on_epoch: tuple[bool, ...]
    default_on_step: bool
    default_on_epoch: bool


_STEP = LogOptions((False, True), (False, True), True, False)  # per-batch training hooks
_EVAL_STEP = LogOptions((False, True), (False, True), False, True)  # per-batch validation/test hooks
_EPOCH = LogOptions((False,), (True,), False, True)  # hooks that run once per epoch or stage

_ALLOWED = {
    **dict.fromkeys((
        "training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "backward",
        "on_after_backward", "on_before_optimizer_step", "optimizer_step", "configure_gradient_clipping",
        "clip_gradients", "on_before_zero_grad", "optimizer_zero_grad",
    ), _STEP),
    **dict.fromkeys((
        "validation_step", "test_step", "on_validation_batch_start", "on_validation_batch_end",
        "on_test_batch_start", "on_test_batch_end",
    ), _EVAL_STEP),
    **dict.fromkeys((
        "on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_validation_start",
        "on_validation_epoch_start", "on_validation_epoch_end", "on_test_start", "on_test_epoch_start",
        "on_test_epoch_end",
    ), _EPOCH),
}

_FORBIDDEN = frozenset((
    "lr_scheduler_step", "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_end", "on_validation_end", "on_test_end", "on_predict_start", "on_predict_end",
    "on_predict_epoch_start", "on_predict_epoch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer", "on_exception",
    "state_dict", "load_state_dict", "on_save_checkpoint", "on_load_checkpoint", "setup", "teardown",
    "configure_sharded_model", "configure_model", "predict_step", "configure_optimizers", "train_dataloader",
    "val_dataloader", "test_dataloader", "predict_dataloader", "prepare_data", "configure_callbacks",
    "on_validation_model_zero_grad", "on_validation_model_eval", "on_test_model_eval",
    "on_validation_model_train", "on_test_model_train", "on_predict_model_eval",
))


def resolve_log_options(hook: str | None, name: str, on_step: bool | None, on_epoch: bool | None) -> tuple[bool, bool]:
    """Return `(on_step, on_epoch)` for a `self.log(name, ...)` call from `hook`, or raise if not allowed."""
    options = _ALLOWED.get(hook)  # type: ignore[arg-type]
    if options is None:
        if hook in _FORBIDDEN:
            raise MisconfigurationException(  # Lightning's words first
                f"You can't `self.log()` inside `{hook}`, where logging is not supported (logging {name!r}). Log from "
                "a step or epoch hook instead, or write to the logger directly via `self.logger.experiment`."
            )
        raise MisconfigurationException(
            f"`self.log({name!r}, ...)` was called outside any hook the Trainer runs (current hook: {hook!r}). "
            "Call it from `training_step`, `validation_step`, `test_step` or an `on_*` hook."
        )
    on_step = options.default_on_step if on_step is None else on_step
    on_epoch = options.default_on_epoch if on_epoch is None else on_epoch
    if on_step not in options.allowed_on_step:
        raise MisconfigurationException(  # Lightning's words first
            f"You can't `self.log(on_step={on_step})` inside `{hook}`, must be one of {options.allowed_on_step} "
            f"(logging {name!r}): that hook runs once per epoch. Use on_step={options.allowed_on_step[0]}."
        )
    if on_epoch not in options.allowed_on_epoch:
        raise MisconfigurationException(
            f"You can't `self.log(on_epoch={on_epoch})` inside `{hook}`, must be one of {options.allowed_on_epoch} "
            f"(logging {name!r}). Use on_epoch=True."
        )
    if not on_step and not on_epoch:
        raise MisconfigurationException(
            f"`self.log(on_step=False, on_epoch=False)` is not useful: {name!r} would go nowhere. Set on_step=True "
            "(a value per step) or on_epoch=True (reduced over the epoch)."
        )
    return on_step, on_epoch


def runs_once_per_epoch(hook: str) -> bool:
    """Whether `hook` is one where `self.log` can only log epoch values (it runs once per epoch or stage)."""
    return _ALLOWED.get(hook) is _EPOCH
