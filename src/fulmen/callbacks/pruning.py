"""ModelPruning: prune parameters with `torch.nn.utils.prune` during training (optionally resetting the survivors to
their initial values, the lottery ticket hypothesis), and save checkpoints with the pruning applied."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from copy import deepcopy
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_debug, rank_zero_only, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger(__name__)

# torch.nn.utils.prune's function names; its method classes have the same names in CamelCase.
_NAMES = ("ln_structured", "l1_unstructured", "random_structured", "random_unstructured")
_CLASS_NAMES = {"ln_structured": "LnStructured", "l1_unstructured": "L1Unstructured",
                "random_structured": "RandomStructured", "random_unstructured": "RandomUnstructured"}


def _torch_prune() -> Any:
    import torch.nn.utils.prune  # imported on first use: `import fulmen` must not load it

    return torch.nn.utils.prune

ParameterList = Sequence[tuple[nn.Module, str]]


def _containers() -> tuple[type, ...]:
    from fulmen.core.module import LightningModule

    return (LightningModule, nn.Sequential, nn.ModuleList, nn.ModuleDict)


class ModelPruning(Callback):
    """Prune `parameters_to_prune` at the end of training epochs (or of validation).

    Args:
        pruning_fn: a name in `torch.nn.utils.prune` ("l1_unstructured", "random_unstructured", "ln_structured",
            "random_structured"), or a `BasePruningMethod` subclass (global pruning only).
        parameters_to_prune: `(module, parameter name)` pairs; empty: every `parameter_names` of every module.
        parameter_names: which parameters to prune when `parameters_to_prune` is empty ("weight", "bias").
        use_global_unstructured: prune across all pairs at once (`global_unstructured`) rather than each pair.
        amount: fraction (float) or number (int) of parameters to prune, or `epoch -> amount`.
        apply_pruning: whether to prune, or `epoch -> bool`.
        make_pruning_permanent: remove the pruning reparametrization when training ends, and save checkpoints
            with the masks applied (plain parameter names).
        use_lottery_ticket_hypothesis: after pruning, reset the remaining parameters to their values when fit
            started (or `epoch -> bool`).
        resample_parameters: with the lottery ticket reset, draw fresh initial values (`reset_parameters()`).
        pruning_dim: the dimension of structured pruning.
        pruning_norm: the norm of "ln_structured".
        verbose: 0 silent, 1 overall sparsity, 2 also per parameter (logger `fulmen.callbacks.pruning`, INFO).
        prune_on_train_epoch_end: prune at `on_train_epoch_end`; False: at `on_validation_epoch_end`.
    """

    PARAMETER_NAMES = ("weight", "bias")

    def __init__(self, pruning_fn: Callable | str, parameters_to_prune: ParameterList = (),
                 parameter_names: list[str] | None = None, use_global_unstructured: bool = True,
                 amount: int | float | Callable[[int], int | float] = 0.5,
                 apply_pruning: bool | Callable[[int], bool] = True, make_pruning_permanent: bool = True,
                 use_lottery_ticket_hypothesis: bool | Callable[[int], bool] = True,
                 resample_parameters: bool = False, pruning_dim: int | None = None, pruning_norm: int | None = None,
                 verbose: int = 0, prune_on_train_epoch_end: bool = True) -> None:
        self._use_global_unstructured = use_global_unstructured
        self._parameters_to_prune = parameters_to_prune
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        self._parameter_names = parameter_names or self.PARAMETER_NAMES
        self._global_kwargs: dict[str, Any] = {}
        self._original_layers: dict[int, dict[str, Any]] | None = None
        self._pruning_method_name: str | None = None
        for name in self._parameter_names:
            if name not in self.PARAMETER_NAMES:
                raise MisconfigurationException(
                    f"The provided `parameter_names` name: {name} isn't in {self.PARAMETER_NAMES}: choose among them, "
                    "or pass `parameters_to_prune=[(module, name), ...]`.")
        if isinstance(pruning_fn, str):
            pruning_fn = self._resolve_name(pruning_fn.lower(), pruning_dim, pruning_norm)
        elif self._is_pruning_method(pruning_fn):
            if not use_global_unstructured:
                raise MisconfigurationException(
                    "PyTorch `BasePruningMethod` is currently only supported with `use_global_unstructured=True`; "
                    "for per-parameter pruning pass the method's name, e.g. 'l1_unstructured'.")
            self._pruning_method_name = pruning_fn.__name__
        else:
            raise MisconfigurationException(
                f"`pruning_fn` is expected to be a str in {list(_NAMES)} or a PyTorch `BasePruningMethod`. "
                f"Found: {pruning_fn}. HINT: if passing a `BasePruningMethod`, pass the class, not an instance")
        if use_global_unstructured and pruning_fn.PRUNING_TYPE != "unstructured":
            raise MisconfigurationException(
                'Only the "unstructured" PRUNING_TYPE is supported with `use_global_unstructured=True`. Found method '
                f"{pruning_fn} of type {pruning_fn.PRUNING_TYPE}. Pass `use_global_unstructured=False` for "
                "structured pruning.")
        self.pruning_fn = pruning_fn
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        if isinstance(amount, bool) or not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationException(
                "`amount` should be provided and be either an int, a float or Callable function.")
        self.amount = amount
        if verbose not in (0, 1, 2):
            raise MisconfigurationException("`verbose` must be any of (0, 1, 2)")
        self._verbose = verbose

    def _resolve_name(self, name: str, dim: int | None, norm: int | None) -> Any:
        if name not in _NAMES:
            raise MisconfigurationException(
                f"The provided `pruning_fn` {name} isn't available in PyTorch's built-in functions: {list(_NAMES)}")
        kwargs: dict[str, Any] = {}
        if name.endswith("_structured"):
            if dim is None:
                raise MisconfigurationException(
                    "When requesting `structured` pruning, the `pruning_dim` should be provided.")
            if name == "ln_structured":
                if norm is None:
                    raise MisconfigurationException(
                        "When requesting `ln_structured` pruning, the `pruning_norm` should be provided.")
                kwargs["n"] = norm
            kwargs["dim"] = dim
        unused = [flag for flag, value in (("pruning_dim", dim), ("pruning_norm", norm))
                  if value is not None and {"pruning_dim": "dim", "pruning_norm": "n"}[flag] not in kwargs]
        if unused:  # Lightning ignores them silently
            rank_zero_warn(f"`ModelPruning({', '.join(unused)}=...)` has no effect with `pruning_fn={name!r}`: only "
                           "'ln_structured' reads `pruning_norm`, and only the structured methods `pruning_dim`.")
        return self._create_pruning_fn(name, **kwargs)

    def filter_parameters_to_prune(self, parameters_to_prune: ParameterList = ()) -> ParameterList:
        """Override to choose which of the `(module, name)` pairs get pruned."""
        return parameters_to_prune

    def _create_pruning_fn(self, pruning_fn: str, **kwargs: Any) -> Any:
        """The pruning method class (global pruning, its kwargs kept for later) or function (kwargs bound)."""
        if self._use_global_unstructured:
            method = getattr(_torch_prune(), _CLASS_NAMES[pruning_fn])
            self._global_kwargs = kwargs
            self._pruning_method_name = method.__name__
            return method
        function = getattr(_torch_prune(), pruning_fn)
        self._pruning_method_name = function.__name__
        return self._wrap_pruning_fn(function, **kwargs)

    @staticmethod
    def _wrap_pruning_fn(pruning_fn: Callable, **kwargs: Any) -> Callable:
        return partial(pruning_fn, **kwargs)

    def make_pruning_permanent(self, module: nn.Module) -> None:
        """Fold every pruning mask of `module` into its parameters and remove the pruning hooks and buffers."""
        for submodule in module.modules():
            for key, hook in list(submodule._forward_pre_hooks.items()):
                if isinstance(hook, _torch_prune().BasePruningMethod):
                    hook.remove(submodule)
                    del submodule._forward_pre_hooks[key]

    @staticmethod
    def _copy_param(new: nn.Module, old: nn.Module, name: str) -> None:
        # A pruned parameter lives on as `<name>_orig`; the mask keeps applying to it.
        target = getattr(new, name + "_orig", None)
        target = getattr(new, name) if target is None else target
        source = getattr(old, name)
        if isinstance(target, torch.Tensor) and isinstance(source, torch.Tensor):
            target.data = source.data.to(target.device)

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Reset the parameters left after pruning to their values when fit started (the "winning ticket"), or to
        freshly drawn ones with `resample_parameters`."""
        assert self._original_layers is not None
        for layer in self._original_layers.values():
            original = layer["data"]
            if self._resample_parameters and callable(getattr(original, "reset_parameters", None)):
                original = deepcopy(original)  # keep the stored initial values
                original.reset_parameters()
            for index, name in layer["names"]:
                module, _ = self._parameters_to_prune[index]
                self._copy_param(module, original, name)

    def _apply_local_pruning(self, amount: float) -> None:
        for module, name in self._parameters_to_prune:
            self.pruning_fn(module, name=name, amount=amount)

    def _resolve_global_kwargs(self, amount: float) -> dict[str, Any]:
        self._global_kwargs["amount"] = amount
        accepted = set(inspect.signature(self.pruning_fn).parameters) - {"self"}
        return {key: value for key, value in self._global_kwargs.items() if key in accepted}

    def _apply_global_pruning(self, amount: float) -> None:
        _torch_prune().global_unstructured(self._parameters_to_prune, pruning_method=self.pruning_fn,
                                        **self._resolve_global_kwargs(amount))

    @staticmethod
    def _get_pruned_stats(module: nn.Module, name: str) -> tuple[int, int]:
        mask = getattr(module, f"{name}_mask", None)
        if mask is None:
            return 0, 1
        return int((mask == 0).sum().item()), mask.numel()

    def apply_pruning(self, amount: int | float) -> None:
        """Prune `parameters_to_prune` by `amount` (logging the sparsity when `verbose`)."""
        before = [self._get_pruned_stats(m, n) for m, n in self._parameters_to_prune] if self._verbose else []
        if self._use_global_unstructured:
            self._apply_global_pruning(amount)
        else:
            self._apply_local_pruning(amount)
        if self._verbose:
            after = [self._get_pruned_stats(m, n) for m, n in self._parameters_to_prune]
            self._log_sparsity_stats(before, after, amount=amount)

    @rank_zero_only
    def _log_sparsity_stats(self, prev: list[tuple[int, int]], curr: list[tuple[int, int]],
                            amount: int | float = 0) -> None:
        total = sum(size for _, size in curr)
        zeros_before, zeros_after = sum(z for z, _ in prev), sum(z for z, _ in curr)
        log.info(f"Applied `{self._pruning_method_name}`. Pruned: {zeros_before}/{total} ({zeros_before / total:.2%})"
                 f" -> {zeros_after}/{total} ({zeros_after / total:.2%})")
        if self._verbose == 2:
            for (module, name), (z0, n0), (z1, n1) in zip(self._parameters_to_prune, prev, curr):
                log.info(f"Applied `{self._pruning_method_name}` to `{module!r}.{name}` with amount={amount}. "
                         f"Pruned: {z0} ({z0 / n0:.2%}) -> {z1} ({z1 / n1:.2%})")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        parameters = self.sanitize_parameters_to_prune(pl_module, self._parameters_to_prune,
                                                       parameter_names=self._parameter_names)
        self._parameters_to_prune = self.filter_parameters_to_prune(parameters)
        if self._use_lottery_ticket_hypothesis:
            # One copy of each module's initial values, with the (index, name) pairs that prune it.
            self._original_layers = {}
            for index, (module, name) in enumerate(self._parameters_to_prune):
                layer = self._original_layers.setdefault(id(module), {"data": deepcopy(module), "names": []})
                layer["names"].append((index, name))

    def _run_pruning(self, current_epoch: int) -> None:
        prune = self._apply_pruning(current_epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(current_epoch) if callable(self.amount) else self.amount
        if not prune or not amount:
            return
        self.apply_pruning(amount)
        lottery = self._use_lottery_ticket_hypothesis
        if lottery(current_epoch) if callable(lottery) else lottery:
            self.apply_lottery_ticket_hypothesis()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._prune_on_train_epoch_end:
            rank_zero_debug("`ModelPruning.on_train_epoch_end`. Applying pruning")
            self._run_pruning(pl_module.current_epoch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and not self._prune_on_train_epoch_end:
            rank_zero_debug("`ModelPruning.on_validation_epoch_end`. Applying pruning")
            self._run_pruning(pl_module.current_epoch)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._make_pruning_permanent:
            rank_zero_debug("`ModelPruning.on_train_end`. Pruning is made permanent for this checkpoint")
            self.make_pruning_permanent(pl_module)

    def _make_pruning_permanent_on_state_dict(self, pl_module: LightningModule) -> dict[str, Any]:
        state_dict = pl_module.state_dict()
        for name in {key[: -len("_mask")] for key in state_dict if key.endswith("_mask")}:
            original, mask = state_dict.pop(name + "_orig"), state_dict.pop(name + "_mask")
            state_dict[name] = mask.to(dtype=original.dtype) * original
        return {key: value.cpu() if isinstance(value, torch.Tensor) else value for key, value in state_dict.items()}

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._make_pruning_permanent:
            # Applied to the saved copy only: training goes on with the masks and `_orig` parameters.
            rank_zero_debug("`ModelPruning.on_save_checkpoint`. Pruning is made permanent for this checkpoint")
            checkpoint["state_dict"] = self._make_pruning_permanent_on_state_dict(pl_module)

    @staticmethod
    def sanitize_parameters_to_prune(pl_module: LightningModule, parameters_to_prune: ParameterList = (),
                                     parameter_names: Sequence[str] = ()) -> ParameterList:
        """Check the given `(module, name)` pairs belong to `pl_module`; when none are given, list every
        `parameter_names` parameter of every non-container module."""
        names = parameter_names or ModelPruning.PARAMETER_NAMES
        modules = [module for module in pl_module.modules() if not isinstance(module, _containers())]
        if not parameters_to_prune:
            return [(module, name) for name in names for module in modules
                    if isinstance(getattr(module, name, None), nn.Parameter)]
        if not (isinstance(parameters_to_prune, (list, tuple))
                and all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in parameters_to_prune)
                and all(isinstance(module, nn.Module) and isinstance(name, str)
                        for module, name in parameters_to_prune)):
            raise MisconfigurationException(
                "The provided `parameters_to_prune` should either be list of tuple with 2 elements: "
                "(nn.Module, parameter_name_to_prune) or None")
        missing_modules = [module for module, _ in parameters_to_prune
                           if not any(module is candidate for candidate in modules)]
        missing_parameters = [name for module, name in parameters_to_prune
                              if any(module is candidate for candidate in modules) and not hasattr(module, name)]
        if missing_modules or missing_parameters:
            raise MisconfigurationException(
                "Some provided `parameters_to_prune` don't exist in the model. Found missing modules: "
                f"{missing_modules} and missing parameters: {missing_parameters}")
        return parameters_to_prune

    @staticmethod
    def _is_pruning_method(method: Any) -> bool:
        return inspect.isclass(method) and issubclass(method, _torch_prune().BasePruningMethod)
