"""Reading checkpoints safely, re-instantiating modules from them, and `hparams.yaml` / tags-csv files."""

from __future__ import annotations

import ast
import csv
import importlib
import os
import sys
import warnings
from argparse import Namespace
from collections.abc import Mapping
from enum import Enum
from typing import Any


def save_hparams_to_yaml(config_yaml: str | os.PathLike, hparams: Mapping[str, Any] | Namespace,
                         use_omegaconf: bool = True) -> None:
    """Write `hparams` as YAML; values YAML cannot represent are written as their `repr`.

    With omegaconf installed and `use_omegaconf=True` (as Lightning), the file is written by `OmegaConf.save`
    (interpolations in `DictConfig` values resolved), falling back to plain YAML for values OmegaConf rejects.
    """
    import yaml

    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    if use_omegaconf and _omegaconf_available():
        if _save_with_omegaconf(config_yaml, hparams):
            return
    plain: dict[str, Any] = {}
    for key, value in dict(hparams).items():
        value = value.name if isinstance(value, Enum) else value  # an enum as its name, as Lightning writes it
        try:
            yaml.safe_dump(value)
            plain[key] = value
        except yaml.YAMLError:
            try:  # what Lightning's (unsafe) YAML cannot write either, it leaves out with this warning
                yaml.dump(value)
            except (TypeError, ValueError, yaml.YAMLError):
                warnings.warn(f"Skipping '{key}' parameter because it is not possible to safely dump to YAML.")
                continue
            plain[key] = repr(value)  # a safe file: the value's text, not a Python object tag
    with open(config_yaml, "w") as file:
        yaml.safe_dump(plain, file)


def load_hparams_from_yaml(config_yaml: str | os.PathLike, use_omegaconf: bool = True) -> dict[str, Any]:
    """Read an `hparams.yaml` file (safely: plain YAML types only). With omegaconf installed and
    `use_omegaconf=True` (as Lightning), the result is an OmegaConf `DictConfig` where OmegaConf accepts it."""
    import yaml

    if not os.path.isfile(config_yaml):  # as Lightning: a warning, and no hyperparameters from it
        from fulmen.utilities.rank_zero import rank_zero_warn

        rank_zero_warn(f"Missing Tags: {os.fspath(config_yaml)}.", category=RuntimeWarning)
        return {}
    with open(config_yaml) as file:
        hparams = yaml.safe_load(file) or {}
    if use_omegaconf and _omegaconf_available():
        from omegaconf import OmegaConf
        from omegaconf.errors import UnsupportedValueType, ValidationError

        try:
            return OmegaConf.create(hparams)  # mapping-like, not a dict subclass (as in Lightning)
        except (UnsupportedValueType, ValidationError):
            pass
    return hparams


def _omegaconf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("omegaconf") is not None


def _save_with_omegaconf(config_yaml: str | os.PathLike, hparams: Mapping[str, Any]) -> bool:
    """Write `hparams` with `OmegaConf.save`; False (nothing written) when OmegaConf rejects a value."""
    import copy

    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import UnsupportedValueType, ValidationError

    # A copy: resolving interpolations must not change the caller's configs.
    plain = {key: OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
             for key, value in copy.deepcopy(dict(hparams)).items()}
    try:
        text = OmegaConf.to_yaml(OmegaConf.create(plain))
    except (UnsupportedValueType, ValidationError):
        return False
    with open(config_yaml, "w", encoding="utf-8") as file:
        file.write(text)
    return True


def update_hparams(hparams: dict, updates: dict) -> None:
    """Merge `updates` into `hparams` in place; nested dicts are merged key by key, other values replaced."""
    for key, value in updates.items():
        if key in hparams and isinstance(value, dict):
            update_hparams(hparams[key], value)
        else:
            hparams[key] = value


def save_hparams_to_tags_csv(tags_csv: str | os.PathLike, hparams: Mapping[str, Any] | Namespace) -> None:
    """Write `hparams` as a two-column `key,value` CSV (the legacy tags format); the folder must exist."""
    folder = os.path.dirname(os.fspath(tags_csv))
    if folder and not os.path.isdir(folder):
        raise RuntimeError(f"Missing folder: {folder}. Create it before saving hparams to {os.fspath(tags_csv)}.")
    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    with open(tags_csv, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["key", "value"])
        writer.writerows([key, value] for key, value in hparams.items())


def load_hparams_from_tags_csv(tags_csv: str | os.PathLike) -> dict[str, Any]:
    """Read a tags CSV written by `save_hparams_to_tags_csv`; values are parsed back with `convert`. A missing
    file gives a RuntimeWarning and `{}` (as Lightning)."""
    if not os.path.isfile(tags_csv):
        from fulmen.utilities.rank_zero import rank_zero_warn

        rank_zero_warn(f"Missing Tags: {os.fspath(tags_csv)}.", category=RuntimeWarning)
        return {}
    with open(tags_csv, newline="") as file:
        rows = list(csv.reader(file))
    return {row[0]: convert(row[1]) for row in rows[1:]}


def convert(val: str) -> int | float | bool | str | Any:
    """Parse `val` as a Python literal (`"3"` → 3, `"True"` → True, `"[1, 2]"` → [1, 2]); else return it as is."""
    try:
        return ast.literal_eval(val)
    except (ValueError, SyntaxError):
        return val


CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"
# Where Lightning 0.7.6 and older kept a module's hyperparameters; still read by `load_from_checkpoint`.
CHECKPOINT_PAST_HPARAMS_KEYS = ("hparams", "module_arguments")


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None) -> dict:
    """Read a checkpoint safely (`weights_only=True` unless told otherwise), with errors that name the file."""
    import pickle

    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    with open(path, "rb") as file:
        magic = file.read(4)
    # torch.save writes a zip archive (or, in its legacy format, a pickle starting with 0x80).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise ValueError(f"{path} is not a checkpoint: it is not a file written by torch.save.")
    safe = weights_only is None or weights_only
    try:
        if safe:
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        else:
            from fulmen.utilities.migration import pl_legacy_patch

            with pl_legacy_patch():  # classes pickled by (old) Lightning load as fulmen's
                checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except pickle.UnpicklingError as error:
        if safe and "weights_only" in str(error):
            raise pickle.UnpicklingError(
                f"{path} holds Python objects that the safe loader refuses to build ({_first_line(error)}). "
                "Loading them would run code from the file, which is only safe for files you trust. If you do, "
                "pass `weights_only=False`."
            ) from None
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated?): {_first_line(error)}") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated?): {_first_line(error)}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a fulmen/Lightning checkpoint: expected a dict with a 'state_dict' key, "
                         f"found {found}.")
    if "pytorch-lightning_version" in checkpoint:
        _upgrade_legacy_layout(checkpoint, path)
    return checkpoint


def _upgrade_legacy_layout(checkpoint: dict, path: str) -> None:
    """Bring a checkpoint from an older Lightning to the layout read here (in memory; the file is unchanged)."""
    from fulmen.utilities.migration import migrate_checkpoint
    from fulmen.utilities.rank_zero import rank_zero_info

    old_version = checkpoint["pytorch-lightning_version"]
    try:
        _, applied = migrate_checkpoint(checkpoint)
    except ValueError:  # not a version string Lightning writes: nothing known to upgrade
        return
    except KeyError as error:
        raise ValueError(f"{path} says it was written by Lightning v{old_version}, but it lacks the entry {error} "
                         "that checkpoints of that version hold, so it cannot be upgraded to the current layout. "
                         "Add the entry, or load its 'state_dict' into the model directly.") from None
    if applied:
        rank_zero_info(f"Upgraded the checkpoint {path}, written by Lightning v{old_version}, to the layout of "
                       f"v{checkpoint['pytorch-lightning_version']} while loading it (the file is unchanged).")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def left_out_key(name_key: str) -> str:
    """fulmen's checkpoint key listing the hyperparameters that were not saved, next to `name_key`."""
    if "hparams_name" in name_key:
        return name_key.replace("hparams_name", "hparams_left_out")  # "hparams_left_out", "datamodule_hparams_left_out"
    return f"{name_key}_left_out"


def instantiate_from_checkpoint(cls: type, checkpoint: dict[str, Any], hparams_key: str,
                                overrides: dict[str, Any], name_key: str = CHECKPOINT_HYPER_PARAMS_NAME,
                                type_key: str = CHECKPOINT_HYPER_PARAMS_TYPE) -> Any:
    """Build `cls` from the hyperparameters stored under `hparams_key`; `overrides` win."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    names = [name for name, p in parameters.items()
             if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    saved: dict[str, Any] = {}
    if hparams_key == CHECKPOINT_HYPER_PARAMS_KEY:  # a module's (not a datamodule's): older keys first
        for past_key in CHECKPOINT_PAST_HPARAMS_KEYS:
            saved.update(checkpoint.get(past_key) or {})
    saved.update(checkpoint.get(hparams_key) or {})
    overrides = dict(overrides)
    # Hyperparameters the checkpoint left out (not plain values) must be given again.
    left_out = checkpoint.get(left_out_key(name_key)) or {}
    missing = [name for name in left_out if name not in overrides]
    if missing:
        described = ", ".join(f"{name!r} ({left_out[name]})" for name in missing)
        example = ", ".join(f"{name}=..." for name in missing)
        raise TypeError(
            f"This checkpoint does not hold {cls.__name__}'s hyperparameter(s) {described}: they are not plain "
            f"values, so they were left out when it was saved. Pass them again: "
            f"`{cls.__name__}.load_from_checkpoint(path, {example})`."
        )
    instantiator = _checked_instantiator(cls, saved)
    container_name = checkpoint.get(name_key)
    if container_name and container_name in names:
        for name in left_out:  # they belong inside the saved dict/Namespace argument
            saved[name] = overrides.pop(name)
    if checkpoint.get(type_key) == "Namespace":
        saved = Namespace(**saved)  # type: ignore[assignment]
    if container_name and container_name in names:
        # save_hyperparameters(hparams) of one dict/Namespace argument: pass it back under its own name.
        kwargs = {container_name: saved}
    else:
        kwargs = dict(vars(saved)) if isinstance(saved, Namespace) else dict(saved)
    kwargs.update(overrides)
    if not accepts_any:
        kwargs = {key: value for key, value in kwargs.items() if key in names}
    return instantiator(cls, kwargs) if instantiator is not None else cls(**kwargs)


# Functions a checkpoint may name to rebuild its module (saved by LightningCLI); anything else could run any code.
_ALLOWED_INSTANTIATORS = {"fulmen.cli.instantiate_module"}


def _checked_instantiator(cls: type, saved: dict[str, Any]) -> Any:
    """Pop `_instantiator` from `saved` and return that function, if it and `_class_path` are trusted."""
    path = saved.pop("_instantiator", None)
    if path is None:
        return None
    if not isinstance(path, str) or path not in _ALLOWED_INSTANTIATORS:
        raise ValueError(
            f"The checkpoint names the instantiator {path!r}, which is not among the trusted ones and was blocked "
            "(it could run arbitrary code). If you trust this checkpoint, add it to "
            "`fulmen.core.saving._ALLOWED_INSTANTIATORS` before loading."
        )
    class_path = saved.get("_class_path")
    if class_path is not None and not _is_imported_subclass(class_path, cls):
        raise ValueError(
            f"The checkpoint asks for class {class_path!r}, which is not an already imported subclass of "
            f"{cls.__name__}; it was blocked (it could run arbitrary code). If you trust this checkpoint, import the "
            "module that defines the class before loading."
        )
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _is_imported_subclass(class_path: Any, cls: type) -> bool:
    # Looks in sys.modules only: checking a checkpoint never imports code.
    if not isinstance(class_path, str) or "." not in class_path:
        return False
    module_name, _, name = class_path.rpartition(".")
    found = getattr(sys.modules.get(module_name), name, None)
    return isinstance(found, type) and issubclass(found, cls)


def load_weights(module: Any, state_dict: Mapping[str, Any], strict: bool, path: str | os.PathLike,
                 strict_hint: str) -> Any:
    """`module.load_state_dict`, with torch's mismatch error extended by what it means and how to proceed."""
    from fulmen.core.compiled import match_compiled_keys

    try:
        return module.load_state_dict(match_compiled_keys(module, state_dict), strict=strict)
    except RuntimeError as error:
        if "Error(s) in loading state_dict" not in str(error):
            raise
        hint = (f"The checkpoint {os.fspath(path)!r} does not fit `{type(module).__name__}`: it was saved from a "
                "different architecture (or other constructor arguments). Load it into the module it was saved "
                f"from; to load only the matching weights, {strict_hint} (missing and unexpected keys are then "
                "reported, not raised; tensors whose shapes differ can never be loaded).")
        raise RuntimeError(f"{hint}\n{error}") from error
