"""Checkpoint file names from templates such as "{epoch}-{val_loss:.2f}" (ModelCheckpoint's naming rules)."""

from __future__ import annotations

import re
from typing import Any

import torch

JOIN_CHAR = "-"
EQUALS_CHAR = "="
EXTENSION = ".ckpt"
DEFAULT_TEMPLATE = "{epoch}" + JOIN_CHAR + "{step}"


def format_template(template: str | None, metrics: dict[str, Any], auto_insert_metric_name: bool = True) -> str:
    """Fill `template` from `metrics`: "{epoch}-{val_loss:.2f}" → "epoch=2-val_loss=0.31".

    Metric names may contain dots or slashes; a name missing from `metrics` is filled with 0.
    """
    template = template or DEFAULT_TEMPLATE
    values = dict(metrics)
    # Longest names first, so "epoch_test" is not half-replaced by "epoch".
    fields = sorted(set(re.findall(r"\{([^{}:]+)(?::[^{}]*)?\}", template)), key=len, reverse=True)
    for name in fields:
        pattern = re.compile(r"\{" + re.escape(name) + r"(:[^{}]*)?\}")
        prefix = f"{name}{EQUALS_CHAR}" if auto_insert_metric_name else ""
        template = pattern.sub(lambda match, n=name, p=prefix: p + "{0[" + n + "]" + (match.group(1) or "") + "}",
                               template)
        values.setdefault(name, torch.tensor(0))
    return template.format(values)


def checkpoint_name(template: str | None, metrics: dict[str, Any], auto_insert_metric_name: bool = True,
                    version: int | None = None, extension: str = EXTENSION) -> str:
    """The file name (with `extension`), with a `-vN` suffix when `version` is given."""
    name = format_template(template, metrics, auto_insert_metric_name)
    if version is not None:
        name = f"{name}{JOIN_CHAR}v{version}"
    return name + extension
