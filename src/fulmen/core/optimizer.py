"""Public import path of `LightningOptimizer` (Lightning's `lightning.pytorch.core.optimizer`); it lives in
`fulmen/optimization/lightning_optimizer.py`."""

from fulmen.optimization.lightning_optimizer import LightningOptimizer as LightningOptimizer  # noqa: F401
from fulmen.optimization.lightning_optimizer import do_nothing_closure as do_nothing_closure  # noqa: F401
