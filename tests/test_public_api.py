"""The public import surface (Lightning's names) and the cost of `import fulmen`."""

import json
import subprocess
import sys

import pytest

import fulmen as L


@pytest.mark.parametrize("name", ["LightningModule", "Trainer", "LightningDataModule", "Callback", "seed_everything"])
def test_top_level_names(name):
    assert getattr(L, name) is not None
    assert name in dir(L)


def test_top_level_names_are_the_subpackage_objects():
    from fulmen.callbacks import Callback
    from fulmen.core import LightningDataModule, LightningModule
    from fulmen.utilities import seed_everything

    assert L.LightningModule is LightningModule
    assert L.LightningDataModule is LightningDataModule
    assert L.Callback is Callback
    assert L.seed_everything is seed_everything
    assert isinstance(L.__version__, str)


def test_unknown_top_level_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        L.no_such_name


def test_callbacks_package():
    from fulmen.callbacks import Callback, ModelSummary, ProgressBar, TQDMProgressBar

    assert issubclass(ModelSummary, Callback)
    assert issubclass(TQDMProgressBar, ProgressBar) and issubclass(ProgressBar, Callback)


def test_loggers_package():
    from fulmen.loggers import CSVLogger, Logger

    assert issubclass(CSVLogger, Logger)


def test_strategies_package():
    from fulmen.strategies import SingleDeviceStrategy, Strategy

    assert issubclass(SingleDeviceStrategy, Strategy)


def test_utilities_package():
    from fulmen.utilities import (
        MisconfigurationException,
        rank_zero_info,
        rank_zero_only,
        rank_zero_warn,
        seed_everything,
    )
    from fulmen.utilities.exceptions import MisconfigurationException as from_exceptions

    assert MisconfigurationException is from_exceptions
    assert all(callable(f) for f in (rank_zero_info, rank_zero_only, rank_zero_warn, seed_everything))


def test_subpackages_are_reachable_as_attributes():
    assert L.accelerators.CPUAccelerator.is_available() and L.plugins.Precision().precision == "32-true"
    assert L.callbacks.ModelSummary is not None
    assert L.loggers.CSVLogger is not None
    assert L.strategies.Strategy is not None
    assert L.utilities.rank_zero_only is not None


_PROBE = """
import json, sys
import fulmen
watched = ["fulmen.trainer", "fulmen.trainer.trainer", "torch._dynamo", "sympy", "tensorboard", "tqdm", "yaml"]
print(json.dumps({name: name in sys.modules for name in watched}))
"""


@pytest.fixture(scope="module")
def modules_after_import():
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module", ["fulmen.trainer", "fulmen.trainer.trainer", "torch._dynamo", "sympy", "tensorboard", "tqdm", "yaml"]
)
def test_import_fulmen_stays_light(modules_after_import, module):
    assert modules_after_import[module] is False


# Records every import statement a fulmen module runs (even of a module torch already loaded), so the check
# holds whatever torch itself imports.
_COMMON_LINE_PROBE = """
import builtins, json, sys
import torch
requests = []
_import = builtins.__import__
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if level == 0 and importer.split(".")[0] == "fulmen":
        requests.extend([name, *(f"{name}.{item}" for item in fromlist or ())])
    return _import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
from fulmen import Trainer, LightningModule
import fulmen.callbacks
builtins.__import__ = _import
print(json.dumps({"requests": sorted(set(requests)), "modules": sorted(sys.modules)}))
"""
_DEFERRED = ("numpy", "torch.distributed", "torch.nn.parallel", "torch.multiprocessing", "yaml", "tqdm",
             "fulmen.strategies.ddp", "fulmen.plugins", "fulmen.loggers.csv_logger", "fulmen.loggers.tensorboard",
             "fulmen.loggers.mlflow")


def test_the_line_every_script_runs_defers_distributed_and_numpy():
    result = subprocess.run([sys.executable, "-c", _COMMON_LINE_PROBE], capture_output=True, text=True, check=True)
    probe = json.loads(result.stdout.strip().splitlines()[-1])

    def deferred(name):
        return any(name == prefix or name.startswith(prefix + ".") for prefix in _DEFERRED)

    assert [name for name in probe["requests"] if deferred(name)] == []
    assert [name for name in probe["modules"] if name.startswith("fulmen") and deferred(name)] == []


def test_lazy_package_names_load_on_first_use():
    import fulmen.loggers
    import fulmen.strategies
    from fulmen.strategies import DDPStrategy, Strategy

    assert issubclass(DDPStrategy, Strategy) and fulmen.strategies.DDPStrategy is DDPStrategy
    assert {"DDPStrategy", "SingleDeviceStrategy", "Strategy"} <= set(dir(fulmen.strategies))
    assert {"CSVLogger", "MLFlowLogger", "TensorBoardLogger", "Logger"} <= set(dir(fulmen.loggers))
    with pytest.raises(AttributeError, match="NoSuchStrategy"):
        fulmen.strategies.NoSuchStrategy


def test_tools_subpackages_are_attributes_of_fulmen_as_in_lightning():
    # `import lightning.pytorch as pl; pl.tuner.Tuner` works in Lightning; fulmen loads these on first access.
    import subprocess
    import sys

    code = "import fulmen as pl; print(pl.tuner.Tuner.__name__, pl.profilers.SimpleProfiler.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["Tuner", "SimpleProfiler"]
