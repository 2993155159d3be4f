"""expected_hooks: the hook calls a run makes, predicted from its flags alone (no model, no loop is run).

This encodes Lightning 2.6's order on its own (it is checked against recordings of Lightning and against
`HookTracer` traces of fulmen, `tests/debug/`), so it can answer "which hooks run, in what order, for my
configuration?" and generate the README's table.

What is predicted: every call as `HookTracer` records it (same dict keys), for a module that defines every
hook (also the optional ones: `prepare_data`, `configure_model`, `on_validation_model_train`,
`on_test_model_train`; narrow with `module_hooks=`), `callbacks` callbacks, no datamodule, the default
single-device strategy, and data of the given number of batches. Each callback hook runs on every callback in
order, then on the module (Lightning calls every hook, overridden or not).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

OPTIONAL_MODULE_HOOKS = ("prepare_data", "configure_model", "on_validation_model_train", "on_test_model_train")
_STAGES = ("fit", "validate", "test", "predict")
_EVAL = {"validate": ("validation", "val_dataloader"), "test": ("test", "test_dataloader"),
         "predict": ("predict", "predict_dataloader")}


def expected_hooks(stage: str, *, callbacks: int = 1, max_epochs: int | None = None, max_steps: int = -1,
                   limit_train_batches: int | float | None = None, limit_val_batches: int | float | None = None,
                   limit_test_batches: int | float | None = None, limit_predict_batches: int | float | None = None,
                   val_check_interval: int | float | None = None, check_val_every_n_epoch: int | None = 1,
                   num_sanity_val_steps: int | None = None, accumulate_grad_batches: int = 1,
                   train_batches: int | None = None, val_batches: int | list[int] | None = None,
                   test_batches: int | None = None, predict_batches: int | None = None,
                   automatic_optimization: bool = True, lr_scheduler_interval: str | None = None,
                   resume_from: tuple[int, int] | None = None,
                   module_hooks: Collection[str] | None = None, **other_flags: Any) -> list[dict[str, Any]]:
    """The hook calls of `trainer.<stage>(model)` (stage: "fit", "validate", "test" or "predict"), in order.

    Trainer flags mean what they mean to `Trainer`. The rest describe the run:

    Args:
        callbacks: how many callbacks the Trainer has (each defines every callback hook).
        train_batches, val_batches, test_batches, predict_batches: batches in each dataloader (`val_batches`: a
            list for several validation dataloaders); when omitted, an int `limit_*_batches` is taken as the count.
        automatic_optimization: False: `training_step` calls `opt.zero_grad()`, `self.manual_backward(loss)` and
            `opt.step()` once.
        lr_scheduler_interval: "step" or "epoch": `configure_optimizers` returns one scheduler with that interval.
        resume_from: `(epoch, batches_done)`: fit resumes from a checkpoint saved in `on_train_batch_end` after
            `batches_done` batches of `epoch` (or, with `batches_done == 0`, saved in `on_train_epoch_end` of the
            epoch before); `on_load_checkpoint` runs and training continues there. validate/test/predict load such a
            checkpoint (`ckpt_path`). Here fulmen differs from Lightning 2.6 on purpose, continuing as the
            uninterrupted run: a validation due after the saved batch runs (Lightning skips it); a checkpoint saved
            at an epoch's last batch finishes that epoch (Lightning skips its `on_train_epoch_end` and the next
            `on_train_epoch_start`); with `max_steps`, an epoch-end checkpoint neither repeats that epoch's end nor
            loses an epoch.
        module_hooks: which of the optional module hooks (`OPTIONAL_MODULE_HOOKS`) the module overrides
            (default: all); the others are not called, as in Lightning.
    """
    if other_flags:
        raise TypeError(f"`expected_hooks` does not model {sorted(other_flags)}; it predicts from max_epochs, "
                        "max_steps, limit_*_batches, val_check_interval, check_val_every_n_epoch, "
                        "num_sanity_val_steps and accumulate_grad_batches (drop the others).")
    if stage not in _STAGES:
        raise ValueError(f"`expected_hooks(stage={stage!r})`: the stage is one of {_STAGES}.")
    if lr_scheduler_interval not in (None, "step", "epoch"):
        raise ValueError(f"`lr_scheduler_interval={lr_scheduler_interval!r}`: use None, 'step' or 'epoch'.")
    optional = set(OPTIONAL_MODULE_HOOKS if module_hooks is None else module_hooks)
    unknown = optional - set(OPTIONAL_MODULE_HOOKS)
    if unknown:
        raise ValueError(f"`module_hooks` names {sorted(unknown)}; only {OPTIONAL_MODULE_HOOKS} are optional.")
    calls = _Calls(stage, callbacks)
    calls.module("configure_callbacks")
    if "prepare_data" in optional:
        calls.module("prepare_data")
    calls.both("setup")
    if "configure_model" in optional:
        calls.module("configure_model")
    if stage == "fit":
        flags = dict(max_epochs=max_epochs, max_steps=max_steps, val_check_interval=val_check_interval,
                     check_val_every_n_epoch=check_val_every_n_epoch, accumulate=accumulate_grad_batches,
                     automatic=automatic_optimization, scheduler=lr_scheduler_interval, resume_from=resume_from,
                     sanity_steps=2 if num_sanity_val_steps is None else num_sanity_val_steps)
        train = _limited(train_batches, limit_train_batches, "train")
        val = [_limited(count, limit_val_batches, "val") for count in _as_list(val_batches)]
        _fit(calls, optional, train, val, val_enabled=bool(val) and limit_val_batches != 0, **flags)
    else:
        given = {"validate": (val_batches, limit_val_batches), "test": (test_batches, limit_test_batches),
                 "predict": (predict_batches, limit_predict_batches)}[stage]
        name = "val" if stage == "validate" else stage
        counts = [_limited(count, given[1], name) for count in _as_list(given[0])]
        if resume_from is not None:  # `ckpt_path`: the module, then the callbacks read it
            calls.module("on_load_checkpoint")
            calls.callback_hooks("on_load_checkpoint")
        if given[1] != 0:  # `limit_*_batches=0`: no data is requested (Lightning)
            calls.module(_EVAL[stage][1])
            if any(counts):  # data without a batch runs no loop
                _eval_loop(calls, optional, _EVAL[stage][0], counts)
    calls.both("teardown")
    return calls.records


class _Calls:
    """The growing list of records, with the position (stage, epoch, batch, depth) of the next call."""

    def __init__(self, fn: str, callbacks: int) -> None:
        self.records: list[dict[str, Any]] = []
        self.fn, self.callbacks = fn, callbacks
        self.stage = {"fit": "train", "validate": "validate", "test": "test", "predict": "predict"}[fn]
        self.epoch, self.batch, self.dataloader, self.depth = 0, None, None, 0

    def add(self, owner: str, hook: str) -> None:
        self.records.append({"run": 0, "fn": self.fn, "stage": self.stage, "epoch": self.epoch,
                             "batch_idx": self.batch, "dataloader_idx": self.dataloader, "depth": self.depth,
                             "owner": owner, "owner_class": "LightningModule" if owner == "module" else "Callback",
                             "hook": hook})

    def module(self, hook: str) -> None:
        self.add("module", hook)

    def callback_hooks(self, hook: str) -> None:
        for index in range(self.callbacks):
            self.add(f"callback[{index}]", hook)

    def both(self, hook: str) -> None:
        """A hook with a callback twin: every callback, then the module."""
        self.callback_hooks(hook)
        self.module(hook)


def _fit(calls: _Calls, optional: set[str], train: int, val: list[int], *, val_enabled: bool,
         max_epochs: int | None, max_steps: int,
         val_check_interval: int | float | None, check_val_every_n_epoch: int | None, accumulate: int,
         automatic: bool, scheduler: str | None, resume_from: tuple[int, int] | None, sanity_steps: int) -> None:
    validating = val_enabled  # validation data and `limit_val_batches != 0` (its loaders may still have no batch)
    start_epoch, start_batch = resume_from or (0, 0)
    if resume_from is not None:
        calls.module("on_load_checkpoint")  # Lightning restores the module, then the callbacks, before the optimizers
        calls.callback_hooks("on_load_checkpoint")
    calls.module("configure_optimizers")
    calls.both("on_fit_start")
    val_requested = False
    # Lightning skips the sanity check when it restarts its loops: resumed inside an epoch, or counting steps.
    restarting = resume_from is not None and (start_batch > 0 or max_steps != -1)
    if validating and sanity_steps != 0 and not restarting:
        calls.stage = "sanity_check"
        calls.callback_hooks("on_sanity_check_start")
        calls.module("val_dataloader")
        sanity = [count if sanity_steps == -1 else min(sanity_steps, count) for count in val]
        if any(sanity):
            _eval_loop(calls, optional, "validation", sanity)
        calls.callback_hooks("on_sanity_check_end")
        calls.stage, val_requested = "train", True
    # Lightning's counters after restoring: the loop's epoch shows from the training data request on when
    # resuming inside an epoch, from the validation data request on otherwise.
    calls.epoch = start_epoch if start_batch else 0
    calls.module("train_dataloader")
    calls.epoch = start_epoch
    epochs = 1000 if max_epochs is None and max_steps == -1 else (-1 if max_epochs is None else max_epochs)
    if train == 0 or epochs == 0 or max_steps == 0:  # nothing to train: no training hook runs (Lightning)
        calls.both("on_fit_end")
        return
    every = check_val_every_n_epoch

    def validation_epoch(epoch: int) -> bool:
        return every is None or (epoch + 1) % every == 0

    if validating and not val_requested and validation_epoch(start_epoch):
        calls.stage = "validate"  # Lightning sets up the validation data at train start if this epoch validates
        calls.module("val_dataloader")
        calls.stage, val_requested = "train", True
    interval = 1.0 if val_check_interval is None else val_check_interval
    val_check_batch = interval if isinstance(interval, int) else max(1, int(train * interval))
    steps = (start_epoch * _steps_per_epoch(train, accumulate, automatic)
             + _steps_per_epoch(start_batch, accumulate, automatic, complete=False))
    total_batch_idx = start_epoch * train + start_batch
    calls.both("on_train_start")
    if start_batch and validating and validation_epoch(start_epoch):
        last = start_batch - 1  # the batch the checkpoint was saved after: its due validation runs now (fulmen)
        if ((total_batch_idx - 1 if every is None else last) + 1) % val_check_batch == 0:
            stepping = not automatic or (last + 1) % accumulate == 0 or last == train - 1
            val_requested = _validation(calls, optional, val, stepping, val_requested)
    epoch = start_epoch
    while (epochs == -1 or epoch < epochs) and not (max_steps != -1 and steps >= max_steps):
        calls.epoch = epoch
        first = start_batch if epoch == start_epoch else 0
        if first == 0:
            calls.both("on_train_epoch_start")  # not again when resuming inside the epoch
        for batch_idx in range(first, train):
            is_last = batch_idx == train - 1
            stepping = not automatic or (batch_idx + 1) % accumulate == 0 or is_last
            _train_batch(calls, batch_idx, stepping, automatic, accumulate, scheduler, is_last)
            if stepping:
                steps += 1
            current = total_batch_idx if every is None else batch_idx
            if validating and validation_epoch(epoch) and (current + 1) % val_check_batch == 0:
                val_requested = _validation(calls, optional, val, stepping, val_requested)
            total_batch_idx += 1
            if max_steps != -1 and steps >= max_steps:
                break
        calls.both("on_train_epoch_end")
        epoch += 1
        calls.epoch = epoch
    calls.both("on_train_end")
    calls.both("on_fit_end")


def _validation(calls: _Calls, optional: set[str], val: list[int], stepping: bool, val_requested: bool) -> bool:
    """A validation inside fit; returns whether the validation data has been requested (it is by now)."""
    calls.stage = "validate"
    if stepping:
        calls.module("on_validation_model_zero_grad")
    if not val_requested:
        calls.module("val_dataloader")  # the first validation asks for its data (Lightning)
    if any(val):  # data without a batch runs no loop
        _eval_loop(calls, optional, "validation", val)
    calls.stage = "train"
    return True


def _steps_per_epoch(batches: int, accumulate: int, automatic: bool, complete: bool = True) -> int:
    if not automatic:
        return batches
    return -(-batches // accumulate) if complete else batches // accumulate


def _train_batch(calls: _Calls, batch_idx: int, stepping: bool, automatic: bool, accumulate: int,
                 scheduler: str | None, is_last: bool) -> None:
    calls.batch = batch_idx
    _transfer(calls)
    calls.both("on_train_batch_start")
    if not automatic:
        calls.module("training_step")
        calls.depth = 1  # inside training_step: manual_backward, then opt.step()
        _backward(calls)
        calls.both("on_before_optimizer_step")
        calls.depth = 0
    else:
        if stepping:
            calls.module("optimizer_step")  # its closure runs training_step, zero_grad and backward inside it
            calls.depth = 1
        calls.module("training_step")
        if batch_idx % accumulate == 0:  # gradients are zeroed on each accumulation window's first batch
            calls.both("on_before_zero_grad")
            calls.module("optimizer_zero_grad")
        _backward(calls)
        if stepping:
            calls.both("on_before_optimizer_step")
            calls.module("configure_gradient_clipping")
        calls.depth = 0
    if automatic and ((scheduler == "step" and stepping) or (scheduler == "epoch" and is_last)):
        calls.module("lr_scheduler_step")
    calls.both("on_train_batch_end")
    calls.batch = None


def _backward(calls: _Calls) -> None:
    calls.both("on_before_backward")
    calls.module("backward")
    calls.both("on_after_backward")


def _transfer(calls: _Calls) -> None:
    for hook in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"):
        calls.module(hook)


def _eval_loop(calls: _Calls, optional: set[str], name: str, counts: list[int]) -> None:
    """One validation/test/predict epoch over dataloaders of `counts` batches."""
    calls.module(f"on_{name}_model_eval")
    calls.both(f"on_{name}_start")
    calls.both(f"on_{name}_epoch_start")
    step = {"validation": "validation_step", "test": "test_step", "predict": "predict_step"}[name]
    for dataloader_idx, count in enumerate(counts):
        for batch_idx in range(count):
            calls.batch, calls.dataloader = batch_idx, dataloader_idx if len(counts) > 1 else None
            _transfer(calls)
            calls.both(f"on_{name}_batch_start")
            calls.module(step)
            calls.both(f"on_{name}_batch_end")
    calls.batch = calls.dataloader = None
    calls.both(f"on_{name}_epoch_end")
    calls.both(f"on_{name}_end")
    if f"on_{name}_model_train" in optional:  # predict has none
        calls.module(f"on_{name}_model_train")


def _as_list(count: int | list[int] | None) -> list[int | None]:
    if isinstance(count, (list, tuple)):
        return list(count)
    return [count]


def _limited(count: int | None, limit: int | float | None, name: str) -> int:
    """Batches run from a dataloader of `count` batches under `limit_<name>_batches` (Lightning's rule)."""
    if count is None:
        if isinstance(limit, int) and not isinstance(limit, bool):
            return limit
        raise ValueError(f"`expected_hooks` needs the number of {name} batches: pass `{name}_batches=N` (or an "
                         f"int `limit_{name}_batches`).")
    if limit is None:
        return count
    if isinstance(limit, int):
        return min(limit, count)
    return int(count * limit)
