"""Demo models and data (Lightning's `demos`); each name loads on first use."""

from fulmen.utilities.lazy_exports import lazy_exports

_BORING = "fulmen.demos.boring_classes"
__getattr__, __dir__ = lazy_exports(__name__, {"BoringModel": _BORING, "BoringDataModule": _BORING, "DemoModel": _BORING})
