"""Port one YAML config (LightningCLI style): rewrite values naming Lightning classes (`class_path:
lightning.pytorch.callbacks.ModelCheckpoint`) to fulmen and check `trainer:` flags and `init_args` keys.

Owns: YAML configs. Does not own: Python files (`port_python`) or output (`port`).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import yaml

from fulmen.debug.port_rules import (MISSING, REMOVED_TRAINER_ARGS, Finding, call_parameters, classify,
                                     explain_missing, lookup, trainer_flag_problem)

_DOTTED = re.compile(r"(?:lightning|pytorch_lightning|lightning_fabric)(?:\.[A-Za-z_]\w*)+")


def port_yaml(path: str, text: str) -> tuple[str, list[Finding]]:
    """The config with its Lightning class paths rewritten, and the findings."""
    findings: list[Finding] = []
    edits: list[tuple[int, int, str]] = []

    def add(node: Any, tag: str, message: str) -> None:
        findings.append(Finding(path, node.start_mark.line + 1, node.start_mark.column + 1, tag, message))

    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return text, [Finding(path, line, column, "error", f"cannot parse the YAML: {error}")]
    for document in documents:
        _walk(document, add, edits)
        if isinstance(document, yaml.MappingNode):
            trainer = _value(document, "trainer")
            if isinstance(trainer, yaml.MappingNode) and _value(trainer, "_target_") is None:
                _check_trainer(trainer, add)  # LightningCLI's `trainer:` section
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text, findings


def _value(mapping: yaml.MappingNode, key: str) -> Any:
    return next((value for name, value in mapping.value if getattr(name, "value", None) == key), None)


def _walk(node: Any, add: Any, edits: list[tuple[int, int, str]]) -> None:
    if isinstance(node, yaml.ScalarNode):
        if isinstance(node.value, str) and _DOTTED.fullmatch(node.value):
            _port_scalar(node, add, edits)
        return
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _walk(item, add, edits)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _walk(value, add, edits)
        # LightningCLI: `class_path:` + `init_args:`; Hydra: `_target_:` next to the arguments.
        class_path, init_args = _value(node, "class_path"), _value(node, "init_args")
        if not isinstance(class_path, yaml.ScalarNode):
            class_path, init_args = _value(node, "_target_"), node
        if isinstance(class_path, yaml.ScalarNode) and isinstance(init_args, yaml.MappingNode):
            _check_arguments(class_path.value, init_args, add)


def _port_scalar(node: yaml.ScalarNode, add: Any, edits: list[tuple[int, int, str]]) -> None:
    kind, rest = classify(node.value)
    if kind != "pytorch" or lookup(rest) is MISSING:
        add(node, *explain_missing(node.value, rest))
        return
    start, end = node.start_mark.index, node.end_mark.index
    written = node.start_mark.buffer[start:end] if node.start_mark.buffer else ""
    at = written.find(node.value)
    if at >= 0:  # a quoted value keeps its quotes
        edits.append((start + at, start + at + len(node.value), f"fulmen.{rest}"))


def _check_arguments(class_path: str, arguments: yaml.MappingNode, add: Any) -> None:
    import fulmen

    kind = classify(class_path)
    obj = lookup(kind[1]) if kind and kind[0] == "pytorch" else None
    if obj is fulmen.Trainer:
        _check_trainer(arguments, add)
        return
    signature = call_parameters(obj) if obj not in (None, MISSING) else None
    if signature is None:
        return
    for key, _ in arguments.value:
        if key.value not in signature.parameters and not _is_directive(key.value):
            accepted = ", ".join(name for name in signature.parameters if name != "self")
            add(key, "unsupported", f"`{class_path}` takes no argument `{key.value}` (it takes: {accepted}).")


def _is_directive(key: Any) -> bool:
    """Hydra's `_target_`, `_partial_`, ... and LightningCLI's `class_path`/`init_args` are not arguments."""
    return not isinstance(key, str) or key.startswith("_") or key in ("class_path", "init_args", "dict_kwargs")


def _check_trainer(trainer: yaml.MappingNode, add: Any) -> None:
    import fulmen

    parameters = inspect.signature(fulmen.Trainer).parameters
    for key, value in trainer.value:
        name = key.value
        if _is_directive(name):
            continue
        if name not in parameters:
            hint = REMOVED_TRAINER_ARGS.get(name)
            if hint:
                add(key, "removed", f"`trainer: {name}` was removed in Lightning 2.0. Fix: {hint}.")
            else:
                add(key, "unsupported", f"`trainer: {name}`: fulmen's Trainer takes no argument `{name}`.")
        elif isinstance(value, yaml.ScalarNode):
            constant = yaml.safe_load(value.value) if value.style is None else value.value
            problem = trainer_flag_problem(name, constant)
            if problem:
                add(value, "unsupported", f"`trainer: {name}: {value.value}`: {problem}")
