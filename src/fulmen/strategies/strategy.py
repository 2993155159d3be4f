"""Strategy base: owns the device(s), the process group (if any), and the model's forward/backward/step.

Owns: moving the module and batches to the device, running step methods under the precision's
`*_step_context`, backward through the precision's `pre_backward`/`backward`/`post_backward`, optimizer
steps through the precision, checkpoint files through `checkpoint_io`, and collectives (reduce, barrier,
broadcast, all_gather). Does not own: hook order (`trainer/hook_dispatch.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Callable

import torch

from fulmen.checkpoint_io import CheckpointIO, TorchCheckpointIO
from fulmen.precision import Precision
from fulmen.strategies.strategy_hooks import StrategyCheckpointsAndHooks
from fulmen.utilities.apply_func import move_data_to_device

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule

# The step method → the precision context it runs in (Lightning's names).
_STEP_CONTEXTS = {"training_step": "train_step_context", "validation_step": "val_step_context",
                  "test_step": "test_step_context", "predict_step": "predict_step_context"}
# Strategy hooks the Trainer calls after the callbacks' and the module's hook of the same name.
STRATEGY_HOOKS = ("on_train_start", "on_train_end", "on_validation_start", "on_validation_end", "on_test_start",
                  "on_test_end", "on_predict_start", "on_predict_end", "on_train_batch_start")


class Strategy(StrategyCheckpointsAndHooks):
    """How the module is placed and driven; subclasses add processes (DDP) or other devices.

    Override the step methods (`training_step`, ...), `backward`, `optimizer_step`, `batch_to_device`, the
    checkpoint methods or the `on_*` hooks in a subclass and pass it as `Trainer(strategy=...)`: the Trainer
    calls them at Lightning's points.
    """

    launcher: Any = None

    def __init__(self, accelerator: Any = None, checkpoint_io: CheckpointIO | None = None,
                 precision_plugin: Precision | None = None) -> None:
        self._accelerator = accelerator
        self._checkpoint_io = checkpoint_io
        self._precision_plugin = precision_plugin
        self._root_device = torch.device("cpu")
        self._module: LightningModule | None = None
        self._optimizers: list[torch.optim.Optimizer] = []
        # Set at the start of fit by `connect_optimization` (what `self.optimizers()` returns).
        self.lightning_optimizers: list[Any] = []
        self.lr_scheduler_configs: list[Any] = []
        self._hooks: Any = None  # fit's hook dispatch, for backward
        self._before_step: Callable[[Any], None] | None = None  # fit's step hooks, run by the precision plugin
        self._dispatch: Any = None  # the run's hook dispatch, for the batch-transfer hooks

    # -- plugins ------------------------------------------------------------------------------------

    @property
    def accelerator(self) -> Any:
        """The `Accelerator` this strategy's device belongs to (the Trainer sets it)."""
        return self._accelerator

    @accelerator.setter
    def accelerator(self, accelerator: Any) -> None:
        self._accelerator = accelerator

    @property
    def precision_plugin(self) -> Precision:
        if self._precision_plugin is None:
            self._precision_plugin = Precision()
        return self._precision_plugin

    @precision_plugin.setter
    def precision_plugin(self, precision_plugin: Precision | None) -> None:
        self._precision_plugin = precision_plugin

    @property
    def checkpoint_io(self) -> CheckpointIO:
        if self._checkpoint_io is None:
            self._checkpoint_io = TorchCheckpointIO()
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, io: CheckpointIO | None) -> None:
        self._checkpoint_io = io

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

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """fit's optimizers (the torch ones; `lightning_optimizers` holds their wrappers)."""
        return self._optimizers

    @optimizers.setter
    def optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        from fulmen.optimization.lightning_optimizer import LightningOptimizer

        self._optimizers = list(optimizers)
        self.lightning_optimizers = [LightningOptimizer(optimizer, self) for optimizer in self._optimizers]

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        """Whether the module's weights and the callbacks' states are restored from `ckpt_path` after `setup` (the
        optimizers then exist) rather than before it (`configure_optimizers` then sees the restored weights)."""
        return False

    @property
    def lightning_restore_optimizer(self) -> bool:
        """Whether the Trainer restores optimizer and scheduler states from a checkpoint (False: the strategy does)."""
        return True

    @property
    def handles_gradient_accumulation(self) -> bool:
        """Whether the strategy accumulates gradients itself (then `accumulate_grad_batches` must stay 1)."""
        return False

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Add this strategy's names to `strategy_registry` (Lightning's registry hook); fulmen's `strategy=`
        names are fixed, so the base class registers nothing."""

    # -- setup ------------------------------------------------------------------------------------

    def connect(self, model: LightningModule) -> None:
        self._module = model

    def connect_optimization(self, lightning_optimizers: list[Any], hooks: Any,
                             before_step: Callable[[Any], None] | None = None) -> None:
        """Take fit's wrapped optimizers (what `self.optimizers()` returns), the hooks `backward` runs, and what
        runs between an optimizer's closure and its update (`on_before_optimizer_step`, clipping)."""
        self.lightning_optimizers = lightning_optimizers
        self._optimizers = [optimizer.optimizer for optimizer in lightning_optimizers]
        self._hooks = hooks
        self._before_step = before_step

    def setup_environment(self) -> None:
        """Prepare this process (join a process group, pick the device) before the `setup` hooks."""
        if self._accelerator is not None:
            self._accelerator.setup_device(self.root_device)

    def setup(self, trainer: Any) -> None:
        """Place the module (precision conversion, device, wrappers) and, when fitting, set up the optimizers."""
        from fulmen.trainer.state import TrainerFn

        if self._accelerator is not None:
            self._accelerator.setup(trainer)
        self.setup_module(self.lightning_module)
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()

    def setup_optimizers(self, trainer: Any) -> None:
        """Call `configure_optimizers` and wrap its optimizers (they become `optimizers`, the schedulers'
        configs `lr_scheduler_configs`)."""
        optimization = trainer._optimization
        optimization.setup(self.lightning_module)
        self.lr_scheduler_configs = optimization.scheduler_configs

    def setup_precision_plugin(self) -> None:
        """Let the precision plugin see the model, optimizers and schedulers (`Precision.connect`)."""
        model, optimizers, schedulers = self.precision_plugin.connect(self.model, self.optimizers,
                                                                      self.lr_scheduler_configs)
        if model is not self.model or list(optimizers) != list(self.optimizers) or \
                list(schedulers) != list(self.lr_scheduler_configs):
            raise NotImplementedError(
                f"`{type(self.precision_plugin).__name__}.connect` returned other objects than it was given; fulmen "
                "keeps the model and optimizers it set up. Convert the module in `convert_module` instead.")

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
        self.model_to_device()

    def model_to_device(self) -> None:
        """Move the module to the root device."""
        if self._module is not None:
            self._module.to(self.root_device)

    def batch_to_device(self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0) -> Any:
        """Move `batch` to `device` (the root device) through the batch-transfer hooks of the running module."""
        device = device or self.root_device
        dispatch = self._dispatch
        if dispatch is not None:
            return dispatch.run_transfer_hooks(batch, dataloader_idx, device)
        return move_data_to_device(batch, device)

    def process_dataloader(self, dataloader: object) -> object:
        """Wrap or replace a dataloader before it is iterated (the identity here)."""
        return dataloader

    @contextlib.contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Generator[None, None, None]:
        """New tensors are made on the root device in the precision's dtype; `empty_init=True` skips their
        initialisation (the weights are loaded afterwards)."""
        with _SkipInit() if empty_init else contextlib.nullcontext(), self.root_device, self.precision_plugin.tensor_init_context():
            yield

    @contextlib.contextmanager
    def model_sharded_context(self) -> Generator[None, None, None]:
        """A context to build the model in, sharded on creation; strategies that do not shard yield at once."""
        yield

    def build_layers(self, build: Callable[[], None]) -> None:
        """Run `build` (the module's `configure_model`) where its new layers belong: on the root device, in the
        precision's dtype, inside `model_sharded_context` (as Lightning)."""
        with self.tensor_init_context(), self.model_sharded_context(), \
                self.precision_plugin.module_init_context():
            build()

    # -- the step ---------------------------------------------------------------------------------

    def step_function(self, name: str) -> Callable[..., Any]:
        """What the Trainer calls for the module's `name` step (training_step, ...), chosen once per run: the
        strategy's method of that name, or, when neither it nor the precision's context is customised, the
        module's method itself (no context to enter)."""
        strategy_step = getattr(self, name)
        context = _STEP_CONTEXTS[name]
        precision_type = type(self.precision_plugin)
        if (getattr(type(self), name) is getattr(Strategy, name)
                and getattr(precision_type, context) is getattr(Precision, context)
                and precision_type.forward_context is Precision.forward_context):
            return getattr(self._module, name)
        return strategy_step

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """The module's `training_step` under the precision's `train_step_context`."""
        with self.precision_plugin.train_step_context():
            return self._module.training_step(*args, **kwargs)

    def post_training_step(self) -> None:
        """Called after each `training_step` (Lightning keeps it for backward compatibility)."""

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """The module's `validation_step` under the precision's `val_step_context`."""
        with self.precision_plugin.val_step_context():
            return self._module.validation_step(*args, **kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """The module's `test_step` under the precision's `test_step_context`."""
        with self.precision_plugin.test_step_context():
            return self._module.test_step(*args, **kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """The module's `predict_step` under the precision's `predict_step_context`."""
        with self.precision_plugin.predict_step_context():
            return self._module.predict_step(*args, **kwargs)

    def backward(self, closure_loss: torch.Tensor, optimizer: torch.optim.Optimizer | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        """`pre_backward`, then the precision's `pre_backward` (scaling, `on_before_backward`), `backward` (the
        module's hook; `*args`/`**kwargs` go to it) and `post_backward` (`on_after_backward`), then
        `post_backward`. Returns the detached loss."""
        if self._hooks is None:
            raise RuntimeError("Backward runs while `trainer.fit` trains the module (after its optimizers are set "
                               "up); call `manual_backward` from `training_step` or a training hook.")
        module = self._module
        precision = self._precision_plugin or self.precision_plugin
        self.pre_backward(closure_loss)
        closure_loss = precision.pre_backward(closure_loss, module)
        precision.backward(closure_loss, module, optimizer, *args, **kwargs)
        closure_loss = precision.post_backward(closure_loss, module)
        self.post_backward(closure_loss)
        return closure_loss

    def pre_backward(self, closure_loss: torch.Tensor) -> None:
        """Called before the precision's backward steps."""

    def post_backward(self, closure_loss: torch.Tensor) -> None:
        """Called after the precision's backward steps."""

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any],
                       model: Any = None, **kwargs: Any) -> Any:
        """Step `optimizer` through the precision plugin (`**kwargs` go to `optimizer.step`)."""
        precision = self._precision_plugin or self.precision_plugin
        return precision.optimizer_step(optimizer, model if model is not None else self._module, closure, **kwargs)

    # -- collectives (single process: identities) ---------------------------------------------------

    def reduce(self, tensor: Any, group: Any = None, reduce_op: str | None = "mean") -> Any:
        """With one process every reduction of `tensor` is `tensor` itself."""
        return tensor

    def barrier(self, name: str | None = None) -> None:
        pass

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    # -- divergence detector (multi-process strategies; a single process has nothing to watch) ---------

    _divergence: Any = None  # the current run's `fulmen.debug.divergence.DivergenceDetector`, if any

    def _watch_collectives(self, state: Any) -> None:
        """Number this run's collectives so diverging ranks are reported (see `ParallelStrategy`)."""

    def _end_collectives(self) -> None:
        """This rank ended its run: with a detector, wait until every rank ended it after the same collectives."""
        if self._divergence is not None:
            self._divergence.finish()

    def _collectives_failed(self, error: BaseException) -> None:
        """The run failed on this rank: with a detector, report a divergence or tell the other ranks who raised."""
        if self._divergence is not None:
            self._divergence.on_exception(error)

    def teardown(self) -> None:
        """Release devices and process groups; the module stays where it is."""
        self.precision_plugin.teardown()
        if self._accelerator is not None:
            self._accelerator.teardown()
        self.checkpoint_io.teardown()


class _SkipInit(torch.overrides.TorchFunctionMode):
    """Inside it `torch.nn.init` functions leave tensors as they are (uninitialised memory, fast to create)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)


def reject_accelerator_object(accelerator: Any, strategy_name: str) -> None:
    """Strategies take no Accelerator object: the Trainer's `accelerator` flag chooses the device type."""
    if accelerator is not None:
        raise NotImplementedError(
            f"`{strategy_name}(accelerator={accelerator!r})` is not supported: fulmen strategies take no Accelerator. "
            "Choose the device with `Trainer(accelerator='cpu'|'cuda'|'mps' or an Accelerator, devices=...)` instead."
        )
