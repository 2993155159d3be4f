"""Read and write `hparams.yaml` files."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any


def save_hparams_to_yaml(path: str | os.PathLike, hparams: Mapping[str, Any] | Namespace) -> None:
    """Write `hparams` as YAML; values YAML cannot represent are written as their `repr`."""
    import yaml

    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    plain: dict[str, Any] = {}
    for key, value in dict(hparams).items():
        try:
            yaml.safe_dump(value)
            plain[key] = value
        except yaml.YAMLError:
            plain[key] = repr(value)
    with open(path, "w") as file:
        yaml.safe_dump(plain, file)


def load_hparams_from_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read an `hparams.yaml` file (safely: plain YAML types only)."""
    import yaml

    if not os.path.isfile(path):
        raise FileNotFoundError(f"hparams file not found: {os.fspath(path)}")
    with open(path) as file:
        return yaml.safe_load(file) or {}
