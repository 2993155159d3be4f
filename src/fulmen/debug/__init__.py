"""Debugging aids: see inside a run (hook tracer, metric explainer, divergence detector, fingerprints, guards).

Nothing here is imported by `import fulmen`; the Trainer imports a tool's module only when its flag is on.
"""

from fulmen.utilities.lazy_exports import lazy_exports

# Public name -> the module defining it (loaded on first access).
_EXPORTS: dict[str, str] = {}
_EXPORTS.update(dict.fromkeys(("NonFiniteError", "NonFiniteGuard", "NonFiniteWarning"), "fulmen.debug.nonfinite_guard"))
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
