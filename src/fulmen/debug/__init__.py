"""Debugging aids: see inside a run (hook tracer, metric explainer, divergence detector, fingerprints, guards).

Nothing here is imported by `import fulmen`; the Trainer imports a tool's module only when its flag is on.
"""

from typing import TYPE_CHECKING

from fulmen.debug.expected_hooks import expected_hooks  # pure Python; bound here so the function, not its module, wins
from fulmen.utilities.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "DivergenceError": "fulmen.debug.divergence",  # raised by a "ddp_spawn" launch whose ranks diverged
    "HookTracer": "fulmen.debug.hook_tracer",
    "MetricsExplanation": "fulmen.debug.metric_explainer",
    "explain_metrics": "fulmen.debug.metric_explainer",
    "NonFiniteError": "fulmen.debug.nonfinite_guard",
    "NonFiniteGuard": "fulmen.debug.nonfinite_guard",
    "NonFiniteWarning": "fulmen.debug.nonfinite_guard",
    "read_fingerprints": "fulmen.debug.fingerprint_file",  # run fingerprints: Trainer(fingerprint=True)
    "diff_runs": "fulmen.debug.fingerprint_diff",
})

if TYPE_CHECKING:
    from fulmen.debug.divergence import DivergenceError
    from fulmen.debug.fingerprint_diff import diff_runs
    from fulmen.debug.fingerprint_file import read_fingerprints
    from fulmen.debug.hook_tracer import HookTracer
    from fulmen.debug.metric_explainer import MetricsExplanation, explain_metrics
    from fulmen.debug.nonfinite_guard import NonFiniteError, NonFiniteGuard, NonFiniteWarning
