"""Profilers: time (or trace) the hooks and steps of a run — `Trainer(profiler="simple"|"advanced"|"pytorch")`.

Each loads on first use (`PyTorchProfiler` brings in `torch.profiler`), so importing fulmen stays cheap.
"""

from typing import TYPE_CHECKING

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "AdvancedProfiler": "fulmen.profilers.advanced",
    "PassThroughProfiler": "fulmen.profilers.base",
    "Profiler": "fulmen.profilers.profiler",
    "PyTorchProfiler": "fulmen.profilers.pytorch",
    "SimpleProfiler": "fulmen.profilers.simple",
})

if TYPE_CHECKING:
    from fulmen.profilers.advanced import AdvancedProfiler
    from fulmen.profilers.base import PassThroughProfiler
    from fulmen.profilers.profiler import Profiler
    from fulmen.profilers.pytorch import PyTorchProfiler
    from fulmen.profilers.simple import SimpleProfiler
