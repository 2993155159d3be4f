"""LightningCLI and its helpers, on jsonargparse (the optional extra: `pip install 'fulmen[cli]'`).

Importing this package loads jsonargparse; `import fulmen` does not.
"""

try:
    import docstring_parser  # noqa: F401  (part of jsonargparse's `signatures` extra: docstring help texts)
    import jsonargparse  # noqa: F401
except ImportError as error:
    raise ModuleNotFoundError(
        f"fulmen.cli needs jsonargparse with its signatures extra ({error}). "
        "Install it with `pip install 'fulmen[cli]'` (or `pip install 'jsonargparse[signatures]'`)."
    ) from error

import torch
from jsonargparse import register_unresolvable_import_paths

from fulmen._logo import cli_lightning_logo
from fulmen.cli.instantiators import instantiate_module
from fulmen.cli.lightning_cli import LightningCLI
from fulmen.cli.parser import (ArgsType, LightningArgumentParser, LRSchedulerCallable, LRSchedulerType,
                               LRSchedulerTypeTuple, LRSchedulerTypeUnion, OptimizerCallable, ReduceLROnPlateau,
                               instantiate_class)
from fulmen.cli.save_config import SaveConfigCallback

# torch classes' __module__ is often not an importable path (pytorch/pytorch#74483): dump them by their public one.
register_unresolvable_import_paths(torch)


def _import_subclasses() -> None:
    # Short class names (`--trainer.callbacks+=ModelCheckpoint`, `--trainer.logger=CSVLogger`) resolve among the
    # imported subclasses, so every public callback and logger is imported here, as Lightning's package does.
    import fulmen.callbacks
    import fulmen.loggers

    for name in fulmen.loggers.__all__:
        try:
            getattr(fulmen.loggers, name)
        except ImportError:  # a logger whose module itself cannot load here
            pass


_import_subclasses()

__all__ = [
    "ArgsType", "LRSchedulerCallable", "LRSchedulerType", "LRSchedulerTypeTuple", "LRSchedulerTypeUnion",
    "LightningArgumentParser", "LightningCLI", "OptimizerCallable", "ReduceLROnPlateau", "SaveConfigCallback",
    "cli_lightning_logo", "instantiate_class", "instantiate_module",
]
