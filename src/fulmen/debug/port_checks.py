"""Checks of a ported project's calls, Trainer uses and Lightning subclasses against fulmen's real signatures.

Owns: Trainer flags and members, keyword arguments of calls into fulmen, hooks Lightning 2.0 removed or changed,
and the behaviour notes. Does not own: imports and rewriting (`port_python`).
"""

from __future__ import annotations

import ast
import inspect
from functools import lru_cache
from typing import Any

from fulmen.debug.port_python import PythonFile
from fulmen.debug.port_rules import (MISSING, REMOVED_HOOK_ARGUMENTS, REMOVED_MEMBERS, REMOVED_TRAINER_ARGS,
                                     REMOVED_TRAINER_MEMBERS, call_parameters, removed_hook_message,
                                     trainer_flag_problem)

_WEIGHTS_ONLY = ("fulmen loads checkpoints with `weights_only=True` by default (a checkpoint cannot run code when "
                 "loaded, so hyperparameters must be plain values). Fix: pass `weights_only=False` for files you "
                 "trust")


def _bases() -> tuple[type, ...]:
    import fulmen

    return fulmen.LightningModule, fulmen.Callback, fulmen.LightningDataModule


def lightning_classes(files: list[PythonFile]) -> dict[int, type]:
    """`id(ClassDef)` -> the fulmen class it derives from, for every class of the project that derives (maybe
    through other project classes, looked up by name in its own file first) from a LightningModule, Callback or
    LightningDataModule."""
    pending = [(file, node) for file in files for node in ast.walk(file.tree) if isinstance(node, ast.ClassDef)]
    found: dict[int, type] = {}
    in_file: dict[tuple[str, str], type] = {}
    anywhere: dict[str, type] = {}
    changed = True
    while changed:
        changed = False
        for file, node in pending:
            if id(node) in found:
                continue
            for base in node.bases:
                obj = file.resolve_object(base)
                if obj is None or obj is MISSING:
                    name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
                    obj = in_file.get((file.path, name), anywhere.get(name))
                if isinstance(obj, type) and issubclass(obj, _bases()):
                    found[id(node)] = in_file[(file.path, node.name)] = anywhere[node.name] = obj
                    changed = True
                    break
    return found


@lru_cache(maxsize=1)
def _trainer() -> Any:
    """One quiet Trainer, to see the attributes an instance has and which ones refuse assignment (None if this
    environment cannot build one, e.g. `PL_TRAINER_*` variables asking for something else: then those checks are
    skipped)."""
    import fulmen

    try:
        return fulmen.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                              enable_progress_bar=False, enable_model_summary=False)
    except Exception:
        return None


def _trainer_has(name: str) -> bool:
    import fulmen

    trainer = _trainer()
    return name.startswith("_") or hasattr(fulmen.Trainer, name) or trainer is None or name in vars(trainer)


def check_file(file: PythonFile, classes: dict[int, type]) -> None:
    """Add the findings about calls, Trainer members and Lightning subclasses in `file`."""
    if not file.bindings and not any(id(node) in classes for node in ast.walk(file.tree)):
        return
    trainers = {target.id for node in ast.walk(file.tree) if isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call) and _is_trainer_class(file, node.value.func)
                for target in node.targets if isinstance(target, ast.Name)} | {"trainer"}
    for node in ast.walk(file.tree):
        if isinstance(node, ast.Call):
            _check_call(file, node, trainers)
        elif isinstance(node, ast.Attribute) and _is_trainer(node.value, trainers):
            _check_trainer_member(file, node)
        elif isinstance(node, ast.ClassDef) and id(node) in classes:
            _check_class(file, node, classes[id(node)])


def _is_trainer_class(file: PythonFile, func: Any) -> bool:
    import fulmen

    return file.resolve_object(func) is fulmen.Trainer


def _is_trainer(node: Any, trainers: set[str]) -> bool:
    return (isinstance(node, ast.Name) and node.id in trainers) or (
        isinstance(node, ast.Attribute) and node.attr == "trainer")


def _check_call(file: PythonFile, call: ast.Call, trainers: set[str]) -> None:
    import fulmen

    obj = file.resolve_object(call.func)
    label = ast.unparse(call.func)
    # A `ckpt_path=None` loads nothing, so it needs no note.
    keywords = {keyword.arg for keyword in call.keywords
                if not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)}
    if obj is fulmen.Trainer:
        _check_trainer_call(file, call, label)
    elif obj not in (None, MISSING):
        _check_keywords(file, call, obj, label, {})
    elif isinstance(call.func, ast.Attribute) and _is_trainer(call.func.value, trainers):
        method = getattr(fulmen.Trainer, call.func.attr, None)
        if callable(method):
            _check_keywords(file, call, method, label, REMOVED_TRAINER_MEMBERS)
        if call.func.attr in ("fit", "validate", "test", "predict") and "ckpt_path" in keywords \
                and "weights_only" not in keywords:
            file.add(call, "differs", f"`{label}(ckpt_path=...)`: {_WEIGHTS_ONLY}.")
    if isinstance(call.func, ast.Attribute) and call.func.attr == "load_from_checkpoint" \
            and "weights_only" not in keywords:
        file.add(call, "differs", f"`{label}(...)`: {_WEIGHTS_ONLY}.")


def _check_trainer_call(file: PythonFile, call: ast.Call, label: str) -> None:
    import fulmen

    if call.args:
        file.add(call, "unsupported", f"`{label}(...)` takes keyword arguments only (as in Lightning 2.x). "
                                      "Fix: name each argument.")
    parameters = inspect.signature(fulmen.Trainer).parameters
    for keyword in call.keywords:
        if keyword.arg is None:
            continue
        if keyword.arg not in parameters:
            hint = REMOVED_TRAINER_ARGS.get(keyword.arg)
            if hint:
                file.add(keyword, "removed", f"`{label}({keyword.arg}=...)` was removed in Lightning 2.0. Fix: {hint}.")
            else:
                file.add(keyword, "unsupported", f"`{label}` takes no argument `{keyword.arg}`.")
        elif isinstance(keyword.value, ast.Constant):
            problem = trainer_flag_problem(keyword.arg, keyword.value.value)
            if problem:
                file.add(keyword, "unsupported", f"`{label}({keyword.arg}={keyword.value.value!r})`: {problem}")


def _check_keywords(file: PythonFile, call: ast.Call, obj: Any, label: str, hints: dict[str, str]) -> None:
    signature = call_parameters(obj)
    if signature is None:
        return
    for keyword in call.keywords:
        if keyword.arg is None or keyword.arg in signature.parameters:
            continue
        hint = hints.get(keyword.arg)
        if hint:
            file.add(keyword, "removed", f"`{label}({keyword.arg}=...)` was removed in Lightning 2.0. Fix: {hint}.")
        else:
            accepted = ", ".join(name for name in signature.parameters if name != "self")
            file.add(keyword, "unsupported", f"`{label}` takes no argument `{keyword.arg}` (it takes: {accepted}).")


def _check_trainer_member(file: PythonFile, node: ast.Attribute) -> None:
    name, label = node.attr, ast.unparse(node)
    if isinstance(node.ctx, ast.Store):
        trainer = _trainer()
        if trainer is None:
            return
        try:
            current = getattr(trainer, name)
        except Exception:  # a property that needs a run in progress: nothing to learn here
            return
        try:
            setattr(trainer, name, current)
        except AttributeError as error:
            file.add(node, "differs", f"`{label} = ...`: {error} (fulmen refuses assigning a flag its loops would "
                                      "not read)")
        return
    if not _trainer_has(name):
        hint = REMOVED_TRAINER_MEMBERS.get(name)
        if hint:
            file.add(node, "removed", f"`{label}` was removed in Lightning 2.0. Fix: {hint}.")
        else:
            file.add(node, "unsupported", f"`{label}`: fulmen's Trainer has no `{name}`.")


def _check_class(file: PythonFile, node: ast.ClassDef, base: type) -> None:
    import fulmen

    is_module = issubclass(base, fulmen.LightningModule)
    defined = {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _check_hook(file, node.name, item, base, is_module)
    for inner in ast.walk(node):
        if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id == "self" \
                and inner.attr not in defined:
            if inner.attr in REMOVED_MEMBERS and not hasattr(base, inner.attr):
                file.add(inner, "removed" if inner.attr != "to_tensorrt" else "unsupported",
                         f"`self.{inner.attr}` is not provided by fulmen. Fix: {REMOVED_MEMBERS[inner.attr]}.")
        elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) \
                and isinstance(inner.func.value, ast.Name) and inner.func.value.id == "self" \
                and inner.func.attr not in defined and callable(getattr(base, inner.func.attr, None)):
            _check_keywords(file, inner, getattr(base, inner.func.attr), f"self.{inner.func.attr}", {})


def _check_hook(file: PythonFile, owner: str, function: ast.FunctionDef, base: type, is_module: bool) -> None:
    import fulmen

    name = function.name
    removed = removed_hook_message(owner, name)
    if removed is not None:
        message, refused = removed
        refusal = " fulmen refuses to train a model that defines it." if refused and is_module else ""
        file.add(function, "removed", message + refusal)
        return
    if name in REMOVED_MEMBERS and not hasattr(base, name):
        file.add(function, "removed", f"`{owner}.{name}` was removed in Lightning 2.0 and fulmen never calls it. "
                                      f"Fix: {REMOVED_MEMBERS[name]}.")
        return
    hook = getattr(base, name, None)
    if not callable(hook) or not getattr(hook, "__module__", "").startswith("fulmen") or not _is_hook(name):
        return
    try:
        expected = list(inspect.signature(hook).parameters.values())[1:]
    except (TypeError, ValueError):
        return
    arguments = function.args
    positional = (arguments.posonlyargs + arguments.args)[1:]
    expected_names = {p.name for p in expected}
    for argument in positional + arguments.kwonlyargs:
        removal = REMOVED_HOOK_ARGUMENTS.get(argument.arg)
        if removal is not None and argument.arg not in expected_names and (not removal[0] or name in removal[0]):
            file.add(argument, "removed", f"`{owner}.{name}` takes `{argument.arg}`: {removal[1]}.")
            return
    if any(p.kind == p.VAR_POSITIONAL for p in expected) or arguments.vararg is not None:
        return
    passed = [p.name for p in expected if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = len(positional) - len(arguments.defaults)
    if required > len(passed):
        file.add(function, "removed", f"`{owner}.{name}` takes {required} arguments, but fulmen (as Lightning 2.x) "
                                      f"calls `{name}({', '.join(passed)})`. Fix: use that signature.")
    if name == "on_save_checkpoint" and issubclass(base, fulmen.Callback) and any(
            isinstance(inner, ast.Return) and _is_state(inner.value) for inner in ast.walk(function)):
        file.add(function, "removed", f"`{owner}.on_save_checkpoint` returns a value, which Lightning 2.0 ignores. "
                                      "Fix: return the callback's state from `state_dict()` and restore it in "
                                      "`load_state_dict(state_dict)`.")


def _is_hook(name: str) -> bool:
    """A method fulmen calls with arguments it chooses: `on_*` hooks and the module hooks that act."""
    from fulmen.trainer.hook_events import MODULE_ACTING, STEP_METHODS

    return name.startswith("on_") or name in MODULE_ACTING or name in STEP_METHODS or name in (
        "setup", "teardown", "state_dict", "load_state_dict")


def _is_state(value: Any) -> bool:
    """A returned dict: Lightning 1.x callbacks returned their state from `on_save_checkpoint`."""
    return isinstance(value, (ast.Dict, ast.DictComp)) or (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict")
