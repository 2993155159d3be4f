"""Gradient clipping as `LightningModule.clip_gradients` does it: the Trainer's flags are the defaults."""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from fulmen.utilities.enums import GradClipAlgorithmType
from fulmen.utilities.exceptions import MisconfigurationException


def clip_gradients(optimizer: Optimizer, clip_val: float | None, algorithm: str | None,
                   trainer_clip_val: float | None, trainer_algorithm: str | None, precision: Any) -> None:
    """Clip the gradients of `optimizer`'s parameters by norm or value, through `precision.clip_gradients`.

    `trainer_clip_val` / `trainer_algorithm` are the Trainer's flags, validated when it was built; a value
    passed here must agree with a flag that is set, and is validated only when it does not come from one.
    """
    check_val = check_algorithm = False
    if clip_val is None:
        clip_val = trainer_clip_val or 0.0
    elif trainer_clip_val is None:
        check_val = True
    elif trainer_clip_val != clip_val:
        raise MisconfigurationException(  # Lightning's words
            f"You have set `Trainer(gradient_clip_val={trainer_clip_val!r})` and have passed `clip_gradients("
            f"gradient_clip_val={clip_val!r})`. Please use only one of them: they disagree."
        )
    if algorithm is None:
        algorithm = trainer_algorithm or "norm"
    elif trainer_algorithm is None:
        check_algorithm = True
    elif trainer_algorithm != algorithm:
        raise MisconfigurationException(
            f"You have set `Trainer(gradient_clip_algorithm={trainer_algorithm!r})` and have passed `clip_gradients("
            f"gradient_clip_algorithm={algorithm!r})`. Please use only one of them: they disagree."
        )
    if check_val and not isinstance(clip_val, (int, float)):
        raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {clip_val}.")  # Lightning's words
    if check_algorithm and algorithm not in ("norm", "value"):
        raise MisconfigurationException(f"`gradient_clip_algorithm` {algorithm} is invalid. Allowed algorithms: "
                                        "['value', 'norm'].")
    if clip_val <= 0:
        return
    precision.clip_gradients(optimizer, clip_val, GradClipAlgorithmType(algorithm))
