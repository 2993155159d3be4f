"""Helpers the experiment-tracking loggers share: the optional-package check, parameter cleaning, metric-name
prefixes and the scan for checkpoints to upload."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any


def require_package(module: str, pip_name: str, logger: str) -> None:
    """Raise a clear `ModuleNotFoundError` when the optional package `module` is not importable (without
    importing it: these packages are slow to import)."""
    if sys.modules.get(module) is not None:
        return
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ModuleNotFoundError(f"{logger} needs the `{module}` package, which is not installed: run "
                                  f"`pip install {pip_name}`, or pick another logger (CSVLogger needs nothing extra).")


def params_dict(params: Any) -> dict[str, Any]:
    """Hyperparameters as a dict: a `Namespace` gives its attributes, `None` nothing."""
    if isinstance(params, Namespace):
        return vars(params)
    return {} if params is None else params


def resolve_callables(params: Mapping[str, Any]) -> dict[str, Any]:
    """Replace callables by something a tracker can store, as Lightning does: a class by its name; any other
    callable is called without arguments and replaced by its result (by its name when that fails or when the
    result is callable too)."""

    def resolve(value: Any) -> Any:
        if inspect.isclass(value):
            return value.__name__
        if not callable(value):
            return value
        try:
            result = value()
        except Exception:
            return getattr(value, "__name__", None)
        return value.__name__ if callable(result) else result

    return {key: resolve(value) for key, value in params.items()}


def json_safe(params: Mapping[str, Any]) -> dict[str, Any]:
    """Values JSON cannot encode become their `str()`."""

    def encodable(value: Any) -> bool:
        if value is None or isinstance(value, (bool, int, float, str, list, dict)):
            return True
        try:
            json.dumps(value)
        except (TypeError, OverflowError, ValueError):
            return False
        return True

    return {key: value if encodable(value) else str(value) for key, value in params.items()}


def add_prefix(metrics: Mapping[str, Any], prefix: str | None, join_char: str) -> Mapping[str, Any]:
    """`{"<prefix><join_char><key>": value}`; the metrics unchanged without a prefix."""
    if not prefix:
        return metrics
    return {f"{prefix}{join_char}{key}": value for key, value in metrics.items()}


def scan_checkpoints(checkpoint_callback: Any, logged: dict[str, float]) -> list[tuple[float, str, Any, str]]:
    """The checkpoints of `checkpoint_callback` not uploaded yet (or rewritten since): `(mtime, path, score, tag)`
    sorted oldest first. `logged` maps uploaded paths to the mtime they had then."""
    found: dict[str, tuple[Any, str]] = {}
    callback = checkpoint_callback
    # Later sources win for the same path: the last checkpoint, then the best, then the other top-k ones.
    if hasattr(callback, "last_model_path") and hasattr(callback, "current_score"):
        found[callback.last_model_path] = (callback.current_score, "latest")
    if hasattr(callback, "best_model_path") and hasattr(callback, "best_model_score"):
        found[callback.best_model_path] = (callback.best_model_score, "best")
    for path, score in getattr(callback, "best_k_models", {}).items():
        found[path] = (score, "best_k")
    entries = sorted((os.stat(path).st_mtime, path, score, tag) for path, (score, tag) in found.items()
                     if path and os.path.isfile(path))
    return [entry for entry in entries if entry[1] not in logged or logged[entry[1]] < entry[0]]
