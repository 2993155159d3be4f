"""Optimization: everything about optimizers and LR schedulers in one place.

- `configure_optimizers.py`: turn `configure_optimizers()`'s output into optimizers and `LRSchedulerConfig`s.
- `lightning_optimizer.py`: the wrapper user code steps (`self.optimizers()`), routed through the strategy.
- `optimization.py`: `Optimization`, one fit's optimizers and schedulers (setup, backward, the step's hooks).
- `scheduler_stepping.py`: which schedulers the fit loop steps when.
- `clipping.py`, `toggling.py`: what `LightningModule.clip_gradients` / `toggle_optimizer` do.
- `placeholder.py`: the optimizer that stands in when `configure_optimizers` returns None.

Nothing is imported here, so importing `fulmen` loads only what it uses.
"""
