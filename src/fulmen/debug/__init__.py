"""Debugging aids: see inside a run (hook tracer, metric explainer, divergence detector, fingerprints, guards).

Nothing here is imported by `import fulmen`; the Trainer imports a tool's module only when its flag is on.
"""

from fulmen.utilities.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "DivergenceError": "fulmen.debug.divergence",  # raised by a "ddp_spawn" launch whose ranks diverged
})
