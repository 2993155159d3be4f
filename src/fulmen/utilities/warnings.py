"""Warning categories (Lightning's public path: `lightning.pytorch.utilities.warnings`)."""

from __future__ import annotations


class PossibleUserWarning(UserWarning):
    """A setting that is allowed but probably not what the user meant (filter it like any UserWarning)."""
