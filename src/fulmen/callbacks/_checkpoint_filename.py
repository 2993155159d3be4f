"""Checkpoint file names from templates such as "{epoch}-{val_loss:.2f}" (ModelCheckpoint's naming rules)."""

from __future__ import annotations

import re
from typing import Any

import torch

JOIN_CHAR = "-"
EQUALS_CHAR = "="
EXTENSION = ".ckpt"


def format_template(template: str | None, metrics: dict[str, Any], auto_insert_metric_name: bool = True,
                    join_char: str = JOIN_CHAR, equals_char: str = EQUALS_CHAR, prefix: str | None = None) -> str:
    """Fill `template` from `metrics`: "{epoch}-{val_loss:.2f}" → "epoch=2-val_loss=0.31".

    Metric names may contain dots or slashes; a name missing from `metrics` is filled with 0. No template means
    "{epoch}<join_char>{step}"; `prefix` is put in front, joined with `join_char`.
    """
    template = template or "{epoch}" + join_char + "{step}"
    values = dict(metrics)
    # Longest names first, so "epoch_test" is not half-replaced by "epoch".
    fields = sorted(set(re.findall(r"\{([^{}:]+)(?::[^{}]*)?\}", template)), key=len, reverse=True)
    for name in fields:
        pattern = re.compile(r"\{" + re.escape(name) + r"(:[^{}]*)?\}")
        inserted = f"{name}{equals_char}" if auto_insert_metric_name else ""
        template = pattern.sub(lambda match, n=name, p=inserted: p + "{0[" + n + "]" + (match.group(1) or "") + "}",
                               template)
        values.setdefault(name, torch.tensor(0))
    name = template.format(values)
    return name if prefix is None else f"{prefix}{join_char}{name}"


def checkpoint_name(template: str | None, metrics: dict[str, Any], auto_insert_metric_name: bool = True,
                    version: int | None = None, extension: str = EXTENSION, join_char: str = JOIN_CHAR,
                    equals_char: str = EQUALS_CHAR, prefix: str | None = None) -> str:
    """The file name (with `extension`), with a `<join_char>vN` suffix when `version` is given."""
    name = format_template(template, metrics, auto_insert_metric_name, join_char, equals_char, prefix)
    if version is not None:
        name = f"{name}{join_char}v{version}"
    return name + extension
