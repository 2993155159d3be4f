"""Strategy base: owns the device(s), the process group (if any), and the model's forward/backward/step.

Owns: moving the module and batches to the device, running step methods under the precision's
context, backward with loss scaling, optimizer steps through the precision, and collectives
(reduce, barrier, broadcast, all_gather). Does not own: hook order (`trainer/hook_dispatch.py`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

import torch

from fulmen.checkpoint_io import CheckpointIO, TorchCheckpointIO
from fulmen.precision import Precision
from fulmen.utilities.apply_func import move_data_to_device

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule


class Strategy:
    """How the module is placed and driven; subclasses add processes (DDP) or other devices."""

    launcher: Any = None

    def __init__(self, device: torch.device | str = "cpu", precision: Precision | None = None,
                 checkpoint_io: CheckpointIO | None = None) -> None:
        self._root_device = torch.device(device)
        self.precision_plugin = precision or Precision()
        self.checkpoint_io = checkpoint_io or TorchCheckpointIO()
        self._module: LightningModule | None = None
        # Set at the start of fit by `connect_optimization` (Lightning's strategy holds its optimizers too).
        self.lightning_optimizers: list[Any] = []
        self._hooks: Any = None

    # -- identity -------------------------------------------------------------------------------

    @property
    def root_device(self) -> torch.device:
        return self._root_device

    @property
    def world_size(self) -> int:
        return 1

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def node_rank(self) -> int:
        return 0

    @property
    def num_nodes(self) -> int:
        return 1

    @property
    def num_processes(self) -> int:
        return 1

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def lightning_module(self) -> LightningModule | None:
        return self._module

    @property
    def model(self) -> torch.nn.Module | None:
        """The module the strategy drives (a wrapper such as DDP in subclasses)."""
        return self._module

    # -- setup ------------------------------------------------------------------------------------

    def connect(self, module: LightningModule) -> None:
        self._module = module

    def connect_optimization(self, lightning_optimizers: list[Any], hooks: Any) -> None:
        """Take fit's wrapped optimizers (what `self.optimizers()` returns) and the hooks `backward` runs."""
        self.lightning_optimizers = lightning_optimizers
        self._hooks = hooks

    def setup_environment(self) -> None:
        """Prepare this process (join a process group, pick the device); nothing for one device."""

    def accumulation_context(self, accumulating: bool) -> contextlib.AbstractContextManager:
        """A context for batches that only accumulate gradients (DDP skips its all-reduce there)."""
        return contextlib.nullcontext()

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int] | None:
        return None

    def set_layer_sync(self, layer_sync: Any) -> None:
        """Synchronise layers such as BatchNorm across processes during fit. With one process a layer already
        sees the whole batch, so there is nothing to do (Lightning ignores `sync_batchnorm` there too)."""

    def setup_module(self, module: LightningModule) -> None:
        """Convert the module to the precision's dtype and move it to the root device."""
        self.precision_plugin.convert_module(module)
        module.to(self.root_device)

    def batch_to_device(self, batch: Any) -> Any:
        return move_data_to_device(batch, self.root_device)

    # -- the step ---------------------------------------------------------------------------------

    def step_function(self, name: str) -> Callable[..., Any]:
        """The callable that runs the module's `name` step (training_step, ...) under the precision's context."""
        module_step = getattr(self._module, name)
        precision = self.precision_plugin
        if type(precision).forward_context is Precision.forward_context:
            return module_step  # full precision: no context to enter, call the module directly

        def step_in_context(*args: Any) -> Any:
            with precision.forward_context():
                return module_step(*args)

        return step_in_context

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """`on_before_backward`, the module's `backward` hook on the precision-scaled loss, `on_after_backward`."""
        hooks = self._hooks
        if hooks is None:
            raise RuntimeError("Backward runs while `trainer.fit` trains the module (after its optimizers are set "
                               "up); call `manual_backward` from `training_step` or a training hook.")
        hooks.on_before_backward(loss)
        hooks.backward(self.precision_plugin.scale_loss(loss), *args, **kwargs)
        hooks.on_after_backward()

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any],
                       before_step: Callable[[], None], automatic: bool = True) -> Any:
        return self.precision_plugin.optimizer_step(optimizer, closure, before_step, automatic)

    # -- collectives (single process: identities) ---------------------------------------------------

    def reduce(self, value: Any, group: Any = None, reduce_op: str | None = "mean") -> Any:
        return value

    def barrier(self, name: str | None = None) -> None:
        pass

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def teardown(self) -> None:
        """Release devices and process groups; the module stays where it is."""
        self.checkpoint_io.teardown()


def reject_accelerator_object(accelerator: Any, strategy_name: str) -> None:
    """Strategies take no Accelerator object: the Trainer's `accelerator` flag chooses the device type."""
    if accelerator is not None:
        raise NotImplementedError(
            f"`{strategy_name}(accelerator={accelerator!r})` is not supported: fulmen strategies take no Accelerator. "
            "Choose the device with `Trainer(accelerator='cpu'|'cuda'|'mps' or an Accelerator, devices=...)` instead."
        )
