"""Upgrading checkpoints written by older Lightning versions (Lightning's `utilities.migration`).

Owns: the in-place upgrades of an old checkpoint dict's layout (`migrate_checkpoint`) and the unpickling
redirects that let `torch.load(..., weights_only=False)` read classes pickled under `pytorch_lightning` /
`lightning.pytorch` (`pl_legacy_patch`). fulmen's own checkpoints follow Lightning 2.6's layout and need neither.
"""

from __future__ import annotations

import pickle
import re
import sys
import threading
import types
from types import TracebackType
from typing import Any, Callable

from fulmen.utilities.rank_zero import rank_zero_warn

__all__ = ["migrate_checkpoint", "pl_legacy_patch"]

_CHECKPOINT = dict[str, Any]
_VERSION_KEY = "pytorch-lightning_version"
_LEGACY_VERSION_KEY = "legacy_pytorch-lightning_version"
_lock = threading.Lock()


def _current_version() -> str:
    from fulmen.trainer.checkpointing import FORMAT_VERSION

    return FORMAT_VERSION


def _parse_version(version: str) -> tuple[int, ...]:
    """`"1.6.0rc1"` -> (1, 6, 0, 0) and `"1.6.0"` -> (1, 6, 0, 1): a pre-release sorts before its release."""
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)", str(version))
    if match is None:
        raise ValueError(f"Cannot read the checkpoint's {_VERSION_KEY!r} value {version!r}: expected a version "
                         "such as '1.9.4'.")
    major, minor, patch, rest = match.groups()
    is_release = not re.match(r"\.?(a|b|rc|dev|pre|alpha|beta)", rest.strip().lower())
    return int(major), int(minor or 0), int(patch or 0), int(is_release)


def _checkpoint_version(checkpoint: _CHECKPOINT) -> str:
    if _VERSION_KEY not in checkpoint:
        raise KeyError(f"The checkpoint has no {_VERSION_KEY!r} key, so the Lightning version that wrote it (and the "
                       f"upgrades it needs) is unknown. Keys found: {sorted(map(str, checkpoint))[:10]}. If it comes "
                       f"from a recent Lightning or fulmen, set `checkpoint[{_VERSION_KEY!r}] = '2.6.0'`.")
    return str(checkpoint[_VERSION_KEY])


def migrate_checkpoint(checkpoint: _CHECKPOINT, target_version: str | None = None
                       ) -> tuple[_CHECKPOINT, dict[str, list[str]]]:
    """Upgrade, in place, a checkpoint dict written by an older Lightning to the layout fulmen reads (Lightning
    2.6's), applying the upgrades of every version after the one recorded in it (up to `target_version`, if
    given). Returns the checkpoint and `{version: [names of the upgrades applied]}`.

    An upgraded checkpoint records the layout version it now has under `"pytorch-lightning_version"` and the
    original one under `"legacy_pytorch-lightning_version"`. A checkpoint from a newer Lightning series is
    returned unchanged, with a warning.
    """
    version = _checkpoint_version(checkpoint)
    current = _current_version()
    if _parse_version(version)[:2] > _parse_version(current)[:2]:
        from fulmen.utilities.warnings import PossibleUserWarning

        rank_zero_warn(f"The loaded checkpoint was produced with Lightning v{version}, which is newer than the "
                       f"checkpoint layout fulmen reads (Lightning v{current}).", category=PossibleUserWarning)
        return checkpoint, {}
    limit = _parse_version(target_version) if target_version is not None else None
    applied: dict[str, list[str]] = {}
    for migration_version, migrations in _MIGRATIONS.items():
        upgrade_to = _parse_version(migration_version)
        if _parse_version(version) >= upgrade_to or (limit is not None and upgrade_to > limit):
            continue
        for migration in migrations:
            checkpoint = migration(checkpoint)
        applied[migration_version] = [migration.__name__ for migration in migrations]
    if _parse_version(version) < _parse_version(current):
        checkpoint.setdefault(_LEGACY_VERSION_KEY, version)
        checkpoint[_VERSION_KEY] = current
    return checkpoint, applied


def _fit_loop(checkpoint: _CHECKPOINT) -> dict[str, Any] | None:
    return checkpoint.get("loops", {}).get("fit_loop") if isinstance(checkpoint.get("loops"), dict) else None


def _progress(*fields: str) -> dict[str, int]:
    return dict.fromkeys(fields, 0)


def _initial_fit_loop_1_6() -> dict[str, Any]:
    """The fit loop's state as Lightning 1.6 saved it before any step: what older checkpoints are filled up to."""
    def tracker(*fields: str) -> dict[str, Any]:
        return {"current": _progress(*fields), "total": _progress(*fields)}

    return {
        "epoch_loop.batch_loop.manual_loop.optim_step_progress": tracker("completed", "ready"),
        "epoch_loop.batch_loop.manual_loop.state_dict": {},
        "epoch_loop.batch_loop.optimizer_loop.optim_progress": {
            "optimizer": {"step": tracker("completed", "ready"),
                          "zero_grad": tracker("completed", "ready", "started")},
            "optimizer_position": 0,
        },
        "epoch_loop.batch_loop.optimizer_loop.state_dict": {},
        "epoch_loop.batch_loop.state_dict": {},
        "epoch_loop.batch_progress": {**tracker("completed", "processed", "ready", "started"), "is_last_batch": False},
        "epoch_loop.scheduler_progress": tracker("completed", "ready"),
        "epoch_loop.state_dict": {"_batches_that_stepped": 0},
        "epoch_loop.val_loop.dataloader_progress": tracker("completed", "ready"),
        "epoch_loop.val_loop.epoch_loop.batch_progress": {**tracker("completed", "processed", "ready", "started"),
                                                          "is_last_batch": False},
        "epoch_loop.val_loop.epoch_loop.state_dict": {},
        "epoch_loop.val_loop.state_dict": {},
        "epoch_progress": tracker("completed", "processed", "ready", "started"),
        "state_dict": {},
    }


def _migrate_model_checkpoint_early_stopping(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """0.10.0: the top-level `checkpoint_callback_*` / `early_stop_callback_*` keys moved into `callbacks`, keyed
    by the callback class."""
    from fulmen.callbacks.early_stopping import EarlyStopping
    from fulmen.callbacks.model_checkpoint import ModelCheckpoint

    moves = {"checkpoint_callback_best_model_score": (ModelCheckpoint, "best_model_score"),
             "checkpoint_callback_best_model_path": (ModelCheckpoint, "best_model_path"),
             "checkpoint_callback_best": (ModelCheckpoint, "best_model_score"),
             "early_stop_callback_wait": (EarlyStopping, "wait_count"),
             "early_stop_callback_patience": (EarlyStopping, "patience")}
    callbacks = checkpoint["callbacks"] = checkpoint.get("callbacks") or {}
    for old_key, (callback_type, name) in moves.items():
        if old_key in checkpoint:
            callbacks[callback_type] = callbacks.get(callback_type) or {}
            callbacks[callback_type][name] = checkpoint.pop(old_key)
    return checkpoint


def _migrate_loop_global_step_to_progress_tracking(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """1.6.0: loops track progress; the optimizer step counters start from the old `global_step`."""
    loops = checkpoint.setdefault("loops", {})
    fit_loop = loops.setdefault("fit_loop", _initial_fit_loop_1_6())
    step = checkpoint["global_step"]
    fit_loop["epoch_loop.batch_loop.optimizer_loop.optim_progress"]["optimizer"]["step"]["total"]["completed"] = step
    fit_loop["epoch_loop.batch_loop.manual_loop.optim_step_progress"]["total"]["completed"] = step
    return checkpoint


def _migrate_loop_current_epoch_to_progress_tracking(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """1.6.0: the epoch counter moved into the fit loop's `epoch_progress`."""
    loops = checkpoint.setdefault("loops", {})
    fit_loop = loops.setdefault("fit_loop", _initial_fit_loop_1_6())
    fit_loop["epoch_progress"]["current"]["completed"] = checkpoint["epoch"]
    return checkpoint


def _migrate_loop_batches_that_stepped(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """1.6.5: the logging step `_batches_that_stepped` is saved; older checkpoints start it at `global_step`."""
    epoch_loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
    epoch_loop.setdefault("_batches_that_stepped", checkpoint["global_step"])
    return checkpoint


def _migrate_model_checkpoint_save_on_train_epoch_end_default(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """1.9.0: `save_on_train_epoch_end` left `ModelCheckpoint`'s state key; drop it so the keys match again."""
    if "callbacks" not in checkpoint:
        return checkpoint
    old_states = checkpoint["callbacks"]

    def new_key(key: str) -> str:
        if not key.startswith("ModelCheckpoint"):
            return key
        return re.sub(r", 'save_on_train_epoch_end': (None|True|False)", "", key)

    # Class-keyed states (the pre-1.5 layout) cannot be matched to a state key: they are dropped.
    new_states = {new_key(key): state for key, state in old_states.items() if isinstance(key, str)}
    if len(new_states) < len(old_states):
        from fulmen.utilities.warnings import PossibleUserWarning

        rank_zero_warn("You have multiple `ModelCheckpoint` callback states in this checkpoint, but we found state "
                       "keys that would end up colliding with each other after an upgrade, which means we can't "
                       "differentiate which of your checkpoint callbacks needs which states. At least one of your "
                       "`ModelCheckpoint` callbacks will not be able to reload the state.",
                       category=PossibleUserWarning)
        return checkpoint
    checkpoint["callbacks"] = new_states
    return checkpoint


def _drop_apex_amp_state(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """2.0.0: apex AMP support is gone; its saved scaler state is dropped."""
    if "amp_scaling_state" in checkpoint:
        rank_zero_warn("This checkpoint contains apex AMP data, but apex support has been removed in v2.0.0.")
        del checkpoint["amp_scaling_state"]
    return checkpoint


def _migrate_loop_structure_after_tbptt_removal(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """2.0.0: the batch loop (truncated backprop) is gone; its optimizer/manual sub-loops move up a level."""
    fit_loop = _fit_loop(checkpoint)
    if fit_loop is None:
        return checkpoint
    for sub_loop in ("manual_loop.optim_step_progress", "manual_loop.state_dict", "optimizer_loop.optim_progress",
                     "optimizer_loop.state_dict"):
        old = f"epoch_loop.batch_loop.{sub_loop}"
        if old in fit_loop:
            fit_loop[f"epoch_loop.{sub_loop}"] = fit_loop.pop(old)
    batch_loop_state = fit_loop.pop("epoch_loop.batch_loop.state_dict", None)
    if batch_loop_state:  # a custom batch loop's state: kept where a user can still find it
        fit_loop["epoch_loop.state_dict"]["old_batch_loop_state_dict"] = batch_loop_state
    return checkpoint


def _migrate_loop_structure_after_optimizer_loop_removal(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """2.0.0: no loop over optimizers any more; the sub-loops are renamed after the optimization mode."""
    fit_loop = _fit_loop(checkpoint)
    if fit_loop is None:
        return checkpoint
    if "epoch_loop.optimizer_loop.optim_progress" in fit_loop:
        fit_loop["epoch_loop.optimizer_loop.optim_progress"].pop("optimizer_position", None)
    renames = {"epoch_loop.optimizer_loop.state_dict": "epoch_loop.automatic_optimization.state_dict",
               "epoch_loop.optimizer_loop.optim_progress": "epoch_loop.automatic_optimization.optim_progress",
               "epoch_loop.manual_loop.state_dict": "epoch_loop.manual_optimization.state_dict",
               "epoch_loop.manual_loop.optim_step_progress": "epoch_loop.manual_optimization.optim_step_progress"}
    for old, new in renames.items():
        if old in fit_loop:
            fit_loop[new] = fit_loop.pop(old)
    return checkpoint


def _migrate_loop_structure_after_dataloader_loop_removal(checkpoint: _CHECKPOINT) -> _CHECKPOINT:
    """2.0.0: the evaluation/prediction loops lost their per-dataloader level; `epoch_loop.*` keys move up."""
    loops = checkpoint.get("loops")
    if not isinstance(loops, dict):
        return checkpoint
    for name in ("predict_loop", "validate_loop", "test_loop"):
        loop = loops.get(name)
        if loop is None:
            continue
        loop.pop("dataloader_progress", None)
        for key in [key for key in loop if key.startswith("epoch_loop.")]:
            loop[key[len("epoch_loop."):]] = loop.pop(key)
    return checkpoint


# Lightning's upgrade steps, by the version that changed the layout; run in this order.
_MIGRATIONS: dict[str, list[Callable[[_CHECKPOINT], _CHECKPOINT]]] = {
    "0.10.0": [_migrate_model_checkpoint_early_stopping],
    "1.6.0": [_migrate_loop_global_step_to_progress_tracking, _migrate_loop_current_epoch_to_progress_tracking],
    "1.6.5": [_migrate_loop_batches_that_stepped],
    "1.9.0": [_migrate_model_checkpoint_save_on_train_epoch_end_default],
    "2.0.0": [_drop_apex_amp_state, _migrate_loop_structure_after_tbptt_removal,
              _migrate_loop_structure_after_optimizer_loop_removal,
              _migrate_loop_structure_after_dataloader_loop_removal],
}

# Lightning packages whose pickled classes have a fulmen counterpart at the same sub-path.
_LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")
# Classes Lightning moved into its `fabric` half; fulmen keeps them here.
_FABRIC_CLASSES = {"AttributeDict": "fulmen.utilities.parsing",
                   "MisconfigurationException": "fulmen.utilities.exceptions",
                   "LightningEnum": "fulmen.utilities.enums"}


def _fulmen_location(module: str, name: str) -> str:
    for package in _LIGHTNING_PACKAGES:
        if module == package or module.startswith(package + "."):
            return "fulmen" + module[len(package):]
    if module.startswith(("lightning_fabric", "lightning.fabric")) and name in _FABRIC_CLASSES:
        return _FABRIC_CLASSES[name]
    return module


class _RedirectingUnpickler(pickle.Unpickler):
    """Reads classes pickled under Lightning's packages from fulmen's modules of the same sub-path."""

    def find_class(self, module: str, name: str) -> Any:
        target = _fulmen_location(module, name)
        if target == module:
            return super().find_class(module, name)
        try:
            return super().find_class(target, name)
        except (ImportError, AttributeError) as error:
            raise pickle.UnpicklingError(
                f"The checkpoint holds the Lightning object {module}.{name}, and fulmen has no {target}.{name} to "
                f"read it as ({error}). Load it with `weights_only=True` if you only need its tensors, or re-save "
                "it without that object.") from None


class pl_legacy_patch:
    """Context manager under which `torch.load(path, weights_only=False)` reads old Lightning checkpoints: classes
    pickled under `pytorch_lightning` / `lightning.pytorch` load as fulmen's classes of the same names, and the
    helpers old checkpoints reference (`utilities.argparse._gpus_arg_default`, the `utilities.argparse_utils`
    module, `utilities.enums._FaultTolerantMode`) exist while it is active.

        with pl_legacy_patch():
            checkpoint = torch.load("old.ckpt", weights_only=False)
    """

    _LEGACY_MODULES = ("fulmen.utilities.argparse", "fulmen.utilities.argparse_utils")

    def __enter__(self) -> pl_legacy_patch:
        _lock.acquire()
        from fulmen.utilities import enums

        self._added_modules = [name for name in self._LEGACY_MODULES if name not in sys.modules]
        for name in self._added_modules:
            module = types.ModuleType(name)
            module._gpus_arg_default = _gpus_arg_default  # type: ignore[attr-defined]
            sys.modules[name] = module

        class _FaultTolerantMode(enums.LightningEnum):
            DISABLED = "disabled"
            AUTOMATIC = "automatic"
            MANUAL = "manual"

        _FaultTolerantMode.__module__ = enums.__name__
        self._added_enum = not hasattr(enums, "_FaultTolerantMode")
        if self._added_enum:
            enums._FaultTolerantMode = _FaultTolerantMode  # type: ignore[attr-defined]
        self._old_unpickler = pickle.Unpickler
        pickle.Unpickler = _RedirectingUnpickler  # type: ignore[misc]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        from fulmen.utilities import enums

        pickle.Unpickler = self._old_unpickler  # type: ignore[misc]
        if self._added_enum:
            delattr(enums, "_FaultTolerantMode")
        for name in self._added_modules:
            sys.modules.pop(name, None)
        _lock.release()


def _gpus_arg_default(value: Any) -> Any:
    """Stand-in for a helper Lightning < 1.2.8 pickled into checkpoints' hyperparameters: returns its argument."""
    return value
