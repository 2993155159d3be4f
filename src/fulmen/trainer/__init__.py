"""The Trainer (public: `fulmen.trainer`, Lightning's `lightning.pytorch.trainer`).

Names load on first use: internal modules import `fulmen.trainer.state` and friends, which must not pull in
the whole Trainer.
"""

from typing import TYPE_CHECKING

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["Trainer", "seed_everything"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "Trainer": "fulmen.trainer.trainer",
    "seed_everything": "fulmen.utilities.seed",
})

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer
    from fulmen.utilities.seed import seed_everything
