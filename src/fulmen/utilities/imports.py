"""Availability flags of optional packages, under Lightning's names (`utilities.imports`).

Each `RequirementCache` flag is truthy when its requirement is installed, checked on first use (not at import);
`str(flag)` says what is missing and how to install it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys

from fulmen.utilities.rank_zero import rank_zero_warn

__all__ = ["RequirementCache", "package_available"]


def package_available(package_name: str) -> bool:
    """Whether the top-level module `package_name` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(package_name) is not None
    except (ImportError, ValueError):
        return False


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(char for char in piece if char.isdigit()) if not piece.isdigit() else piece
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break  # "0rc1": keep the number, stop at the pre-release tag
    return tuple(parts)


class RequirementCache:
    """`"package"` or `"package>=X.Y"`: truthy when the distribution is installed (at that minimum version),
    checked once on first use. `module` (default: the package name) is the import name to look for."""

    def __init__(self, requirement: str, module: str | None = None) -> None:
        self.requirement = requirement
        self.module = module
        self._message: str | None = None
        self._checked = False

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        name, _, minimum = self.requirement.partition(">=")
        name = name.strip()
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if self.module is None or not package_available(self.module):
                self._message = (f"Requirement {self.requirement!r} not met: {name} is not installed. "
                                 f"HINT: Try running `pip install -U '{self.requirement}'`")
            return
        if minimum and _version_tuple(installed) < _version_tuple(minimum.strip()):
            self._message = (f"Requirement {self.requirement!r} not met: found {name}=={installed}. "
                             f"HINT: Try running `pip install -U '{self.requirement}'`")

    def __bool__(self) -> bool:
        self._check()
        return self._message is None

    def __str__(self) -> str:
        self._check()
        return self._message or f"Requirement {self.requirement!r} met"

    def __repr__(self) -> str:
        return self.__str__()


_PYTHON_GREATER_EQUAL_3_11_0 = sys.version_info[:2] >= (3, 11)
_TORCH_VERSION = _version_tuple(importlib.metadata.version("torch"))[:2]
_TORCH_GREATER_EQUAL_2_6 = _TORCH_VERSION >= (2, 6)
_TORCH_GREATER_EQUAL_2_8 = _TORCH_VERSION >= (2, 8)
_TORCH_EQUAL_2_8 = _TORCH_VERSION == (2, 8)
_TORCH_EQUAL_2_9 = _TORCH_VERSION == (2, 9)
_TORCHMETRICS_GREATER_EQUAL_0_8_0 = RequirementCache("torchmetrics>=0.8.0")
_TORCHMETRICS_GREATER_EQUAL_0_9_1 = RequirementCache("torchmetrics>=0.9.1")
_TORCHMETRICS_GREATER_EQUAL_0_11 = RequirementCache("torchmetrics>=0.11.0")
_TORCHMETRICS_GREATER_EQUAL_1_0_0 = RequirementCache("torchmetrics>=1.0.0")
_OMEGACONF_AVAILABLE = package_available("omegaconf")
_TORCHVISION_AVAILABLE = RequirementCache("torchvision")
_RICH_AVAILABLE = RequirementCache("rich>=10.2.2")


@functools.lru_cache(maxsize=128)
def _try_import_module(module_name: str) -> bool:
    """Whether `module_name` imports; a failing import is reported as a warning, once per name."""
    try:
        __import__(module_name)
    except (ImportError, AttributeError) as error:
        rank_zero_warn(f"Import of {module_name} package failed for some compatibility issues:\n{error}")
        return False
    return True
