"""LightningModule: a `torch.nn.Module` that organizes training code, plus its links to the Trainer.

Owns: the user-facing API on the module (`log`, `optimizers()`, `manual_backward`, properties).
Does not own: how logged values are reduced (`results/`) or when hooks run (`loops/`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import nn
from torch.optim import Optimizer

from fulmen.core.hooks import CheckpointHooks, DataHooks, ModelHooks
from fulmen.core.hparams import HyperparametersMixin
from fulmen.optimization.clipping import clip_gradients
from fulmen.optimization.lightning_optimizer import LightningOptimizer
from fulmen.optimization.toggling import restore_requires_grad, toggle_requires_grad
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# What `LightningModule.optimizers()` returns: one optimizer or a list, wrapped (the default) or not.
MODULE_OPTIMIZERS = Union[Optimizer, LightningOptimizer, list[Optimizer], list[LightningOptimizer]]


class LightningModule(HyperparametersMixin, ModelHooks, DataHooks, CheckpointHooks, nn.Module):
    """A `torch.nn.Module` with the six sections of a training system: init, train, validation, test,
    predict, and optimizer configuration."""

    # TorchScript compiles every property it meets; these only make sense with a Trainer around.
    __jit_unused_properties__: list[str] = [
        "trainer", "fabric", "automatic_optimization", "strict_loading", "example_input_array", "current_epoch",
        "global_step", "global_rank", "local_rank", "logger", "loggers", "device", "dtype", "on_gpu", "hparams",
        "hparams_initial", "device_mesh",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._log_router: Any = None  # where `self.log` sends values; the Trainer sets it for each run
        self._automatic_optimization = True
        self._example_input_array: Any = None
        self._strict_loading: bool | None = None
        self._jit_is_scripting = False

    # -- the six sections -------------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run data through the model; used by `predict_step` and `self(x)`."""
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Compute and return the training loss (a tensor, or a dict with a `"loss"` key)."""
        raise NotImplementedError

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """Run one validation batch; log metrics with `self.log`."""

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """Run one test batch; log metrics with `self.log`."""

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """Return the prediction for one batch; by default, `self(batch)`."""
        batch = kwargs.get("batch", args[0] if args else None)
        return self(batch)

    def configure_optimizers(self) -> Any:
        """Return the optimizer(s) and optional LR scheduler(s) for training."""
        return None

    def configure_callbacks(self) -> Any:
        """Return callbacks that the Trainer adds to its own (replacing ones of the same type)."""
        return []

    # -- optimization -----------------------------------------------------------------------------

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step `optimizer`; the closure runs training_step, zero_grad and backward."""
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Zero the optimizer's gradients."""
        optimizer.zero_grad()

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Run the backward pass; override for custom backward logic."""
        loss.backward(*args, **kwargs)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Step `scheduler`, passing `metric` when it monitors one (ReduceLROnPlateau)."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip gradients before the optimizer step; by default per the Trainer's clipping flags."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients of `optimizer`'s parameters by norm (default) or by value."""
        trainer = self.trainer
        clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm, trainer.gradient_clip_val,
                       trainer.gradient_clip_algorithm, trainer.strategy.precision_plugin)

    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """Return the optimizer, or the list of optimizers when there are several."""
        trainer = self.trainer
        optimizers = trainer.strategy.lightning_optimizers if use_pl_optimizer else trainer.optimizers
        return optimizers[0] if len(optimizers) == 1 else list(optimizers)

    def lr_schedulers(self) -> Any:
        """Return the LR scheduler, the list of schedulers when there are several, or None."""
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Let only `optimizer`'s parameters receive gradients (others get `requires_grad=False`) until untoggled."""
        self._requires_grad_before_toggle = toggle_requires_grad(self.trainer.optimizers, optimizer)

    def untoggle_optimizer(self, optimizer: Any) -> None:
        """Restore the `requires_grad` flags that `toggle_optimizer` changed."""
        restore_requires_grad(self.trainer.optimizers, optimizer, getattr(self, "_requires_grad_before_toggle", {}))
        self._requires_grad_before_toggle = {}

    @contextlib.contextmanager
    def toggled_optimizer(self, optimizer: Any) -> Iterator[None]:
        """`toggle_optimizer` for the duration of a `with` block."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Run backward with the hooks and precision scaling; use instead of `loss.backward()` in manual mode."""
        if self.automatic_optimization:
            raise MisconfigurationException(
                "to use manual_backward, please disable automatic optimization: set model property "
                "`automatic_optimization` as False (or, with automatic optimization, return the loss from "
                "`training_step` instead).")
        self.trainer.strategy.backward(loss, None, *args, **kwargs)

    # -- logging ----------------------------------------------------------------------------------

    def log(
        self, name: str, value: Any, prog_bar: bool = False, logger: bool | None = None,
        on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: Any = "mean",
        enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
        add_dataloader_idx: bool = True, batch_size: int | None = None, metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Log a scalar for this step and/or reduce it over the epoch (see the logging docs)."""
        router = self._log_router
        if router is None:
            rank_zero_warn(f"`self.log({name!r}, ...)` was called on a module that is not attached to a Trainer; "
                           "the value is dropped. Call it from a hook the Trainer runs.")
            return
        router.log(
            self, name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
            reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist, sync_dist_group=sync_dist_group,
            add_dataloader_idx=add_dataloader_idx, batch_size=batch_size, metric_attribute=metric_attribute,
            rank_zero_only=rank_zero_only,
        )

    def log_dict(
        self, dictionary: Mapping[str, Any], prog_bar: bool = False, logger: bool | None = None,
        on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: Any = "mean",
        enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
        add_dataloader_idx: bool = True, batch_size: int | None = None, rank_zero_only: bool = False,
    ) -> None:
        """Log every key/value pair of `dictionary` (a mapping, or a torchmetrics `MetricCollection`: each of its
        metrics under its own name) with the same options."""
        from fulmen.results.metrics_router import log_dict_items

        for name, value in log_dict_items(dictionary):
            self.log(
                name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist,
                sync_dist_group=sync_dist_group, add_dataloader_idx=add_dataloader_idx, batch_size=batch_size,
                rank_zero_only=rank_zero_only,
            )

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Gather tensors (or a collection of them) from every process: each gets a leading world-size dim."""
        from fulmen.strategies.ddp import gather_collection

        return gather_collection(self.trainer.strategy, data, group, sync_grads)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print` on global rank zero only, above the progress bar when one is shown."""
        if self._trainer is None:
            print(*args, **kwargs)
        else:
            self._trainer.print(*args, **kwargs)

    # -- checkpoints ------------------------------------------------------------------------------

    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, map_location: Any = None,
                             hparams_file: str | os.PathLike | None = None, strict: bool | None = None,
                             weights_only: bool | None = None, **kwargs: Any) -> LightningModule:
        """Re-create the module from a checkpoint's saved hyperparameters (`kwargs` win) and load its weights.

        Loading is safe by default (`weights_only=True`): nothing in the file can run code. Pass
        `weights_only=False` only for files you trust. `strict` checks that the weights match the module.
        """
        from fulmen.core.saving import (instantiate_from_checkpoint, load_checkpoint_file, load_hparams_from_yaml,
                                        load_weights)

        checkpoint = load_checkpoint_file(checkpoint_path, map_location, weights_only)
        if hparams_file is not None:
            checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY] = load_hparams_from_yaml(hparams_file)
            checkpoint.pop(cls.CHECKPOINT_HYPER_PARAMS_NAME, None)
        model = instantiate_from_checkpoint(cls, checkpoint, cls.CHECKPOINT_HYPER_PARAMS_KEY, kwargs,
                                            name_key=cls.CHECKPOINT_HYPER_PARAMS_NAME,
                                            type_key=cls.CHECKPOINT_HYPER_PARAMS_TYPE)
        if strict is None:
            strict = model.strict_loading
        elif model._strict_loading is not None and strict != model._strict_loading:
            raise ValueError(f"`load_from_checkpoint(strict={strict})` contradicts `{cls.__name__}.strict_loading="
                             f"{model._strict_loading}`; set only one of them.")
        model.on_load_checkpoint(checkpoint)
        result = load_weights(model, checkpoint["state_dict"], strict, checkpoint_path,
                              "pass `strict=False` to `load_from_checkpoint`")
        if not strict and (result.missing_keys or result.unexpected_keys):
            rank_zero_warn(f"Loaded {os.fspath(checkpoint_path)} with strict=False: missing keys "
                           f"{result.missing_keys}, unexpected keys {result.unexpected_keys}.")
        state_tensors = (value for value in checkpoint["state_dict"].values() if isinstance(value, torch.Tensor))
        device = next(state_tensors, torch.empty(0)).device
        return model.to(device)

    # -- export -----------------------------------------------------------------------------------

    def to_onnx(self, file_path: str | os.PathLike | None = None, input_sample: Any = None, **kwargs: Any) -> Any:
        """Export to ONNX with `torch.onnx.export` (kwargs pass through); `example_input_array` is the default input.

        Needs the optional ONNX packages (`pip install fulmen[onnx]`). Returns what torch returns (an
        `ONNXProgram` with the default exporter).
        """
        if importlib.util.find_spec("onnx") is None:
            raise ModuleNotFoundError("`to_onnx` needs the `onnx` package (and `onnxscript` for torch's default "
                                      "exporter): `pip install fulmen[onnx]`.")
        sample = self._export_input(input_sample, "input_sample", "to_onnx")
        was_training = self.training
        try:
            self.eval()
            args = sample if isinstance(sample, tuple) else (sample,)
            return torch.onnx.export(self, args, file_path, **kwargs)
        finally:
            self.train(was_training)

    def to_torchscript(self, file_path: str | os.PathLike | None = None, method: str = "script",
                       example_inputs: Any = None, **kwargs: Any) -> Any:
        """Compile to TorchScript by `"script"` or `"trace"` (tracing uses `example_input_array` by default)."""
        if method not in ("script", "trace"):
            raise ValueError(f"`to_torchscript(method={method!r})` is invalid; use 'script' or 'trace'.")
        was_training = self.training
        try:
            self.eval()
            self._jit_is_scripting = True  # TorchScript inspects every attribute, `trainer` included
            if method == "script":
                compiled = torch.jit.script(self, **kwargs)
            else:
                sample = self._export_input(example_inputs, "example_inputs", "to_torchscript(method='trace')")
                compiled = torch.jit.trace(self, example_inputs=sample, **kwargs)
        finally:
            self._jit_is_scripting = False
            self.train(was_training)
        if file_path is not None:
            torch.jit.save(compiled, os.fspath(file_path))
        return compiled

    def _export_input(self, given: Any, argument: str, caller: str) -> Any:
        sample = self._example_input_array if given is None else given
        if sample is None:
            raise ValueError(f"`{caller}` needs an input to run the model on: pass `{argument}=` or set "
                             "`self.example_input_array` in `__init__`.")
        from fulmen.utilities.apply_func import move_data_to_device

        sample = self.on_before_batch_transfer(sample, 0)
        return move_data_to_device(sample, self.device)

    # -- freezing ---------------------------------------------------------------------------------

    def freeze(self) -> None:
        """Turn off gradients for every parameter and put the module in eval mode."""
        for parameter in self.parameters():
            parameter.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Turn gradients back on for every parameter and put the module in train mode."""
        for parameter in self.parameters():
            parameter.requires_grad = True
        self.train()

    # -- properties -------------------------------------------------------------------------------

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None and not self._jit_is_scripting:
            raise RuntimeError(
                f"{type(self).__name__} is not attached to a `Trainer`; this attribute is only available "
                "while `trainer.fit/validate/test/predict` runs the module."
            )
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        # As Lightning, LightningModules nested in this one share its Trainer (`self.inner.current_epoch` works).
        for child in self.children():
            if isinstance(child, LightningModule):
                child.trainer = trainer
        object.__setattr__(self, "_trainer", trainer)

    @property
    def fabric(self) -> None:
        return None

    @property
    def automatic_optimization(self) -> bool:
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = bool(value)

    @property
    def strict_loading(self) -> bool:
        return True if self._strict_loading is None else self._strict_loading

    @strict_loading.setter
    def strict_loading(self, value: bool) -> None:
        self._strict_loading = value

    @property
    def example_input_array(self) -> Any:
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, value: Any) -> None:
        self._example_input_array = value

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def logger(self) -> Any:
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list:
        return self._trainer.loggers if self._trainer is not None else []

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def device_mesh(self) -> Any:
        """The `DeviceMesh` of `ModelParallelStrategy` (None under other strategies), for `configure_model`."""
        return self.__dict__.get("_device_mesh")
