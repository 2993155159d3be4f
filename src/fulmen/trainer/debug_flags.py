"""The Trainer's debugging flags (`trace_hooks`, `on_nonfinite`, `fingerprint`) turned into their tools.

A `fulmen.debug` module is imported only for a tool in use; the non-finite guard always is (its default "warn"
checks values fulmen reads anyway, at no per-step cost). Each tool checks its flag's value when built, so a bad
value fails before the Trainer builds anything else.
"""

from __future__ import annotations

import os
from typing import Any


def debug_tools(trace_hooks: bool | str | os.PathLike | Any, on_nonfinite: str,
                fingerprint: bool | str | os.PathLike | None) -> tuple[Any, Any, Any]:
    """(hook tracer or None, non-finite guard, fingerprint setting or None) for the flags' values."""
    from fulmen.debug.nonfinite_guard import NonFiniteGuard

    guard = NonFiniteGuard(on_nonfinite)
    tracer = None
    if trace_hooks is not False and trace_hooks is not None:
        from fulmen.debug.hook_tracer import tracer_from_flag

        tracer = tracer_from_flag(trace_hooks)
    fingerprints = None
    if fingerprint is not False and fingerprint is not None:
        from fulmen.debug.fingerprint import FingerprintSetting

        fingerprints = FingerprintSetting(fingerprint)
    return tracer, guard, fingerprints
