"""Demo models and data (Lightning's `demos`); each name loads on first use."""

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["BoringDataModule", "BoringModel", "DemoModel"]

_BORING = "fulmen.demos.boring_classes"
__getattr__, __dir__ = lazy_exports(__name__, {name: _BORING for name in __all__})
