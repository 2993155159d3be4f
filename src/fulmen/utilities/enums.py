"""String enums that compare equal to their value in any letter case (Lightning's `LightningEnum`)."""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Literal

__all__ = ["GradClipAlgorithmType", "LightningEnum"]

_Source = Literal["key", "value", "any"]


class LightningEnum(str, Enum):
    """A `str` enum equal to its value, or to another enum with that value, ignoring case; hashed the same way
    so members work as dict keys and in sets."""

    @classmethod
    def from_str(cls, value: str, source: _Source = "key") -> LightningEnum:
        """The member whose name (`source="key"`, case-insensitive), value (`"value"`, exact) or either
        (`"any"`, names first) matches `value`; ValueError listing the choices otherwise."""
        if source in ("key", "any"):
            for name, member in cls.__members__.items():
                if name.lower() == value.lower():
                    return member
        if source in ("value", "any"):
            for member in cls.__members__.values():
                if member == value:
                    return member
        raise ValueError(f"Invalid match: expected one of {cls._allowed_matches(source)}, but got {value}.")

    @classmethod
    def try_from_str(cls, value: str, source: _Source = "key") -> LightningEnum | None:
        """Like `from_str`, but warns and returns None when nothing matches."""
        try:
            return cls.from_str(value, source)
        except ValueError:
            warnings.warn(UserWarning(f"Invalid string: expected one of {cls._allowed_matches(source)}, but got "
                                      f"{value}."), stacklevel=2)
            return None

    @classmethod
    def _allowed_matches(cls, source: str) -> list[str]:
        names = list(cls.__members__)
        values = [member.value for member in cls.__members__.values()]
        return {"key": names, "value": values}.get(source, names + values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Enum):
            other = other.value
        return self.value.lower() == str(other).lower()

    def __hash__(self) -> int:
        return hash(self.value.lower())


class GradClipAlgorithmType(LightningEnum):
    """`Trainer(gradient_clip_algorithm=...)`: clip the norm of all gradients together, or each value."""

    VALUE = "value"
    NORM = "norm"

    @staticmethod
    def supported_type(val: str) -> bool:
        """Whether `val` is one of the values (exactly)."""
        return any(member.value == val for member in GradClipAlgorithmType)

    @staticmethod
    def supported_types() -> list[str]:
        """The values: `["value", "norm"]`."""
        return [member.value for member in GradClipAlgorithmType]
