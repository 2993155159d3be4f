"""Debugging aids: see inside a run (hook tracer, metric explainer, divergence detector, fingerprints, guards).

Nothing here is imported by `import fulmen`; the Trainer imports a tool's module only when its flag is on.
"""
