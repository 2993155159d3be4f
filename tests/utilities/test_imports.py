"""`utilities.imports`: availability flags for optional packages, under Lightning's names."""

import sys

import pytest

from fulmen.utilities import imports
from fulmen.utilities.imports import RequirementCache, package_available


def test_flags_for_installed_and_missing_packages():
    assert RequirementCache("torch") and RequirementCache("torch>=1.0")
    missing = RequirementCache("surely-not-installed-pkg>=1.0")
    assert not missing
    assert "surely-not-installed-pkg" in str(missing) and "pip install -U 'surely-not-installed-pkg>=1.0'" in str(missing)
    too_new = RequirementCache("torch>=999.0")
    assert not too_new and "found torch==" in str(too_new)
    assert package_available("torch") and not package_available("surely_not_installed_pkg")


def test_lightning_flag_names_exist_with_their_meaning():
    assert imports._TORCH_GREATER_EQUAL_2_6 is True  # fulmen needs a recent torch
    assert imports._PYTHON_GREATER_EQUAL_3_11_0 == (sys.version_info >= (3, 11))
    assert imports._OMEGACONF_AVAILABLE == package_available("omegaconf")
    assert bool(imports._TORCHVISION_AVAILABLE) == package_available("torchvision")
    assert bool(imports._RICH_AVAILABLE) == package_available("rich")
    for name in ("_TORCHMETRICS_GREATER_EQUAL_0_8_0", "_TORCHMETRICS_GREATER_EQUAL_1_0_0", "_TORCH_GREATER_EQUAL_2_8",
                 "_TORCH_EQUAL_2_8", "_TORCH_EQUAL_2_9"):
        assert isinstance(bool(getattr(imports, name)), bool)


def test_try_import_module_warns_once_for_a_broken_module():
    assert imports._try_import_module("json")
    with pytest.warns(UserWarning, match="Import of surely_not_a_module"):
        assert not imports._try_import_module("surely_not_a_module")
