"""What `training_step` returned, checked and shaped for `on_train_batch_end` (automatic and manual optimization).

Owns: the accepted return types and the errors that name a wrong one. Attribute checks only, so the
per-step cost stays a few `isinstance` calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fulmen.utilities.apply_func import apply_to_collection
from fulmen.utilities.exceptions import MisconfigurationException


def _checked_loss(loss: Any) -> torch.Tensor:
    """The loss `training_step` returned, if backward can run on it (attribute checks only: no per-step cost)."""
    if not isinstance(loss, torch.Tensor):
        raise MisconfigurationException(
            f"`training_step` returned a loss of type {type(loss).__name__}; return a tensor computed from the "
            "model's output (not a Python number or `loss.item()`), so backward can reach the parameters.")
    if not loss.requires_grad:
        raise RuntimeError(  # the type torch's backward raises here in Lightning, with the cause and the fix
            "`training_step` returned a loss that does not require grad, so backward cannot train anything: it "
            "was detached (`.detach()`, `.item()`, `torch.no_grad()`), or no parameter it depends on requires grad "
            "(all frozen). Return the loss computed from the model's output, with grad.")
    if loss.ndim and loss.numel() != 1:
        raise MisconfigurationException(
            f"`training_step` returned a loss of shape {tuple(loss.shape)}; the loss must be a scalar. Reduce it, "
            "e.g. `loss.mean()` or a loss function with `reduction='mean'`.")
    return loss


def split_training_output(output: Any) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """Automatic optimization: the checked loss (None skips the batch) and the other entries of a dict output."""
    if output is None:
        return None, {}
    if isinstance(output, torch.Tensor):
        return _checked_loss(output), {}
    if isinstance(output, Mapping):
        if "loss" not in output:
            raise MisconfigurationException(  # Lightning's words, then what was returned
                "In automatic_optimization, when `training_step` returns a dict, the 'loss' key needs to be present; "
                f"the dict's keys are {sorted(output)}."
            )
        # Like Lightning, only the loss is detached for `on_train_batch_end`; other entries pass as returned.
        return _checked_loss(output["loss"]), {key: value for key, value in output.items() if key != "loss"}
    raise MisconfigurationException(
        "In automatic optimization, `training_step` must return a Tensor, a dict, or None (where the step will be "
        f"skipped); it returned {type(output).__name__}. Return the loss tensor, or a dict with it under 'loss'."
    )


def manual_step_output(output: Any) -> dict[str, Any]:
    """Manual optimization: what `on_train_batch_end` receives (tensors detached)."""
    if output is None:
        return {}
    if isinstance(output, torch.Tensor):
        return {"loss": output.detach()}
    if isinstance(output, Mapping):
        return apply_to_collection(dict(output), torch.Tensor, torch.Tensor.detach)
    raise MisconfigurationException(
        "In manual optimization, `training_step` must either return a Tensor or have no return (a dict is taken "
        f"too); it returned {type(output).__name__}."
    )
