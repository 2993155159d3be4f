"""Batch-size scaling (Lightning's `tuner.batch_size_scaling`): run a few steps at growing batch sizes until
memory runs out, and keep the largest size that fit."""

from __future__ import annotations

import logging
from typing import Any

import torch

from fulmen.trainer.state import TrainerFn
from fulmen.trainer.stages import STAGE_OF_FN, STAGES
from fulmen.trainer.trial import Trial, request_data_again, stage_loaders
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.memory import garbage_collection_cuda, is_oom_error
from fulmen.utilities.parsing import lightning_getattr, lightning_setattr
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

log = logging.getLogger(__name__)


def _check_margin(margin: float) -> None:
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"`margin` should be between 0 and 1 (0 included); received margin={margin}.")


def _scale_batch_size(trainer: Any, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2,
                      max_trials: int = 25, batch_arg_name: str = "batch_size", margin: float = 0.05,
                      max_val: int = 8192) -> int | None:
    """Search the largest batch size that runs `steps_per_trial` steps of the running stage without running out
    of memory; the run is put back as it was afterwards, and `batch_arg_name` holds the size found."""
    _check_margin(margin)
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping batch size scaler since `fast_dev_run` is enabled.")
        return None
    fn = trainer.state.fn
    stage = STAGE_OF_FN[fn]
    if fn != TrainerFn.FITTING and len(stage_loaders(trainer)) > 1:
        raise MisconfigurationException(
            f"The Batch size finder cannot be used with multiple {STAGES[stage].loader_prefix} dataloaders.")
    if fn == TrainerFn.FITTING:
        # The trials count from step 0 (Lightning resets the progress), so `max_steps` is the trial length.
        flags = {"limit_train_batches": 1.0, "limit_val_batches": steps_per_trial, "max_steps": steps_per_trial,
                 "num_sanity_val_steps": 0}
    else:
        flags = {STAGES[stage].limit_flag: steps_per_trial}
    with Trial(trainer, [], flags, from_step_zero=True) as trial:
        new_size, _ = _adjust_batch_size(trainer, None, batch_arg_name, value=init_val)
        if mode == "power":
            new_size = _run_power_scaling(trainer, trial, new_size, batch_arg_name, max_trials, max_val)
        elif mode == "binsearch":
            new_size = _run_binsearch_scaling(trainer, trial, new_size, batch_arg_name, max_trials, margin, max_val)
        else:
            raise ValueError(f"`mode` should be either of ('power', 'binsearch'); received {mode!r}.")
        _collect_before_trial()
        log.info(f"Finished batch size finder, will continue with full run using batch size {new_size}")
    request_data_again(trainer)
    return new_size


def _collect_before_trial() -> None:
    # Lightning collects before every trial; the Python-wide `gc.collect` is slow and frees no CUDA cache when
    # CUDA is not in use, so on CPU only failed trials (whose tracebacks hold tensors) are collected.
    if torch.cuda.is_initialized():
        garbage_collection_cuda()


def _trial_ok(trial: Trial) -> bool:
    """Run one trial: True if it ran, False if it ran out of memory; any other error is raised."""
    try:
        trial.run()
    except RuntimeError as error:
        if not is_oom_error(error):
            raise
        garbage_collection_cuda()
        return False
    return True


def _run_power_scaling(trainer: Any, trial: Trial, new_size: int, batch_arg_name: str, max_trials: int,
                       max_val: int) -> int:
    """Double the size after each success; after the first failure, halve it and stop."""
    any_success = False
    for index in range(max_trials):
        _collect_before_trial()
        if new_size >= max_val:  # Lightning stops at the cap without trying it
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        if _trial_ok(trial):
            if index + 1 >= max_trials:
                break
            new_size, changed = _adjust_batch_size(trainer, trial, batch_arg_name, factor=2.0, desc="succeeded",
                                                   max_val=max_val)
            if not changed:
                break
            any_success = True
        else:
            new_size, _ = _adjust_batch_size(trainer, trial, batch_arg_name, factor=0.5, desc="failed",
                                             max_val=max_val)
            if any_success:
                break
    return new_size


def _run_binsearch_scaling(trainer: Any, trial: Trial, new_size: int, batch_arg_name: str, max_trials: int,
                           margin: float, max_val: int) -> int:
    """Double the size until a failure, then bisect between the last success and the failure; `margin` off."""
    low, high, count = 1, None, 0
    while True:
        _collect_before_trial()
        if new_size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        if _trial_ok(trial):
            count += 1
            if count >= max_trials:
                break
            low = new_size
            if high:
                if high - low <= 1:
                    break
                new_size, changed = _adjust_batch_size(trainer, trial, batch_arg_name, value=(high + low) // 2,
                                                       desc="succeeded", max_val=max_val)
            else:
                new_size, changed = _adjust_batch_size(trainer, trial, batch_arg_name, factor=2.0, desc="succeeded",
                                                       max_val=max_val)
            if not changed:
                break
        else:
            high = new_size
            new_size, _ = _adjust_batch_size(trainer, trial, batch_arg_name, value=(high + low) // 2, desc="failed",
                                             max_val=max_val)
            if high - low <= 1:
                break
    if margin > 0:
        reduced = max(1, int(new_size * (1 - margin)))
        if reduced != new_size:
            rank_zero_info(f"Applying margin of {margin:.1%}, reducing batch size from {new_size} to {reduced}")
            new_size = reduced
            lightning_setattr(trainer.lightning_module, batch_arg_name, new_size)
    return new_size


def _dataset_length(trial: Trial | None) -> int | None:
    """The length of the latest trial's data under Lightning's rule (training: the longest dataset; evaluation:
    all datasets together); None before a trial or when a dataset has no length."""
    loaders = [] if trial is None else trial.trial_loaders()
    try:
        lengths = [len(loader.dataset) for loader in loaders]
    except (AttributeError, TypeError):
        return None
    if not lengths:
        return None
    return max(lengths) if trial.run_state.fn == TrainerFn.FITTING else sum(lengths)


def _adjust_batch_size(trainer: Any, trial: Trial | None, batch_arg_name: str = "batch_size", factor: float = 1.0,
                       value: int | None = None, desc: str | None = None, max_val: int = 8192) -> tuple[int, bool]:
    """Set the batch size to `value` (or the current one times `factor`), capped at `max_val`; return it and
    whether it changed. A size already as large as the dataset is kept (Lightning's rule)."""
    model = trainer.lightning_module
    batch_size = lightning_getattr(model, batch_arg_name)
    length = _dataset_length(trial)
    if length is not None and batch_size >= length:
        rank_zero_info(f"The batch size {batch_size} is greater or equal than the length of your dataset: {length}.")
        return batch_size, False
    new_size = value if value is not None else int(batch_size * factor)
    if new_size > max_val:
        if desc:
            rank_zero_info(f"Batch size {new_size} exceeds max_val limit {max_val}, capping at {max_val}")
        new_size = max_val
    if desc:
        rank_zero_info(f"Batch size {batch_size} {desc}, trying batch size {new_size}")
    lightning_setattr(model, batch_arg_name, new_size)
    return new_size, new_size != batch_size
