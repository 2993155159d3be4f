"""Warning categories (Lightning's public path: `lightning.pytorch.utilities.warnings`)."""

from __future__ import annotations

__all__ = ["PossibleUserWarning", "disable_possible_user_warnings"]


class PossibleUserWarning(UserWarning):
    """A setting that is allowed but probably not what the user meant (filter it like any UserWarning)."""


def disable_possible_user_warnings(module: str = "") -> None:
    """Ignore `PossibleUserWarning`s, from every module or only those whose name matches the regex `module`
    (the module a warning is attributed to); use `warnings.filterwarnings` for finer control."""
    import warnings

    warnings.filterwarnings("ignore", category=PossibleUserWarning, module=module)
