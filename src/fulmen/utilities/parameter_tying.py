"""Finding and restoring parameters shared between layers (weight tying), e.g. after moving a module."""

from __future__ import annotations

from torch import nn

__all__ = ["find_shared_parameters", "set_shared_parameters"]


def find_shared_parameters(module: nn.Module) -> list[list[str]]:
    """Groups of dotted names that refer to one shared parameter (each group has two or more names, in
    registration order); an empty list when nothing is shared."""
    names_by_param: dict[nn.Parameter, list[str]] = {}
    _collect(module, "", names_by_param)
    return [names for names in names_by_param.values() if len(names) > 1]


def _collect(module: nn.Module, prefix: str, names_by_param: dict[nn.Parameter, list[str]]) -> None:
    # Walk `_parameters`/`_modules` directly: `named_parameters()` would drop the duplicates being looked for.
    for name, param in module._parameters.items():
        if param is not None:
            names_by_param.setdefault(param, []).append(f"{prefix}{name}")
    for name, child in module._modules.items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", names_by_param)


def set_shared_parameters(module: nn.Module, shared_params: list) -> nn.Module:
    """Tie again each group from `find_shared_parameters`: every later name is pointed at the first name's
    parameter. Returns `module` (changed in place)."""
    for first, *others in shared_params:
        source = module
        for part in first.split("."):
            source = getattr(source, part)
        for path in others:
            owner_path, _, attribute = path.rpartition(".")
            owner = module.get_submodule(owner_path) if owner_path else module
            setattr(owner, attribute, source)
    return module
