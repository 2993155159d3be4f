"""Checks that a checkpoint can resume `fit` with the optimizers and schedulers configured now.

Without them a weights-only checkpoint would silently restore the counters with fresh optimizer state,
and an optimizer of another type would fail later inside its `step` (e.g. a bare `KeyError: 'step'`).
"""

from __future__ import annotations

from typing import Any


class CheckpointKeyError(KeyError):
    """A `KeyError` (Lightning raises one here too) whose message prints as text, not as a quoted key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_resumable(checkpoint: dict[str, Any], path: str) -> None:
    """Raise when `checkpoint` holds only weights, so `fit(ckpt_path=...)` cannot continue the run from it."""
    missing = [key for key in ("optimizer_states", "lr_schedulers") if key not in checkpoint]
    if missing:
        raise CheckpointKeyError(
            "Trying to restore optimizer state but checkpoint contains only the model. This is probably due to "
            "`ModelCheckpoint.save_weights_only` being set to `True`. "
            f"`fit(ckpt_path={path!r})` cannot resume training: the checkpoint holds only the model weights "
            f"(no {' or '.join(repr(key) for key in missing)}), as written by `ModelCheckpoint(save_weights_only=True)`"
            " or `trainer.save_checkpoint(..., weights_only=True)`. To train on from these weights with a fresh "
            "optimizer, load them and call `fit` without `ckpt_path`: `model = MyModule.load_from_checkpoint(path)` "
            "(or `model.load_state_dict(torch.load(path)['state_dict'])`), then `trainer.fit(model, ...)`. "
            "`validate`/`test`/`predict` accept this checkpoint as it is.")


def _only_in(saved: Any, current: Any) -> tuple[set[str], set[str]]:
    saved_keys, current_keys = set(saved), set(current)
    return saved_keys - current_keys, current_keys - saved_keys


def _mismatch(path: str, what: str, detail: str) -> ValueError:
    return ValueError(f"`fit(ckpt_path={path!r})`: the checkpoint's {what} does not match the one configured now: "
                      f"{detail}. Resume with the `configure_optimizers` the checkpoint was saved with, or, to start "
                      "the optimizers and schedulers fresh from its weights, load them with "
                      "`MyModule.load_from_checkpoint(path)` and call `fit` without `ckpt_path`.")


def load_optimizer_states(optimizers: list[Any], states: list[dict[str, Any]], path: str) -> None:
    """Load each saved optimizer state, naming any difference in count, type or parameter groups."""
    if len(states) != len(optimizers):
        raise _mismatch(path, "number of optimizers", f"it has {len(states)}, `configure_optimizers` returned "
                                                       f"{len(optimizers)}")
    for index, (optimizer, state) in enumerate(zip(optimizers, states)):
        name = type(optimizer).__name__
        saved_groups, groups = state.get("param_groups", []), optimizer.param_groups
        if len(saved_groups) != len(groups):
            raise _mismatch(path, f"optimizer {index} ({name})", f"it has {len(saved_groups)} parameter groups, "
                                                                 f"the optimizer now has {len(groups)}")
        sizes = [len(group["params"]) for group in saved_groups], [len(group["params"]) for group in groups]
        if sizes[0] != sizes[1]:
            raise _mismatch(path, f"optimizer {index} ({name})", f"its parameter groups hold {sizes[0]} parameters, "
                                                                 f"the optimizer's now hold {sizes[1]}")
        # Hyperparameters present on only one side (both ways, so options added by newer torch versions
        # do not count) mean another optimizer type, e.g. SGD's `momentum` vs Adam's `betas`.
        saved_only, current_only = _only_in(saved_groups[0] if saved_groups else {}, groups[0] if groups else {})
        if saved_only and current_only:
            raise _mismatch(path, f"optimizer {index}", f"it was saved from an optimizer with "
                                                        f"{sorted(saved_only)}, but `{name}` has {sorted(current_only)}"
                                                        " instead (a different optimizer type)")
        try:
            optimizer.load_state_dict(state)
        except (KeyError, ValueError) as error:
            raise _mismatch(path, f"optimizer {index} ({name})", f"{type(error).__name__}: {error}") from error


def load_scheduler_states(configs: list[Any], states: list[dict[str, Any]], path: str) -> None:
    """Load each saved scheduler state, naming any difference in count or type."""
    if len(states) != len(configs):
        raise _mismatch(path, "number of learning-rate schedulers",
                        f"it has {len(states)}, `configure_optimizers` returned {len(configs)}")
    for index, (config, state) in enumerate(zip(configs, states)):
        scheduler = config.scheduler
        saved_only, current_only = _only_in(state, scheduler.state_dict())
        if saved_only and current_only:
            raise _mismatch(path, f"scheduler {index}", f"it was saved from a scheduler with {sorted(saved_only)}, "
                                                        f"but `{type(scheduler).__name__}` has {sorted(current_only)} "
                                                        "instead (a different scheduler type)")
        scheduler.load_state_dict(state)
