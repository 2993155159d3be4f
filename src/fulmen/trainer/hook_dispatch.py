"""THE place hooks are called: callbacks, then the datamodule or module, in Lightning's order.

Owns: which callbacks/module hooks run for each event and in what order, the name of the running hook
(for `self.log`), and Lightning's ordering exceptions. At `bind()` each event becomes one prebuilt
function that calls only what is overridden, so an event nobody overrides costs one no-op call. With an
active profiler (not `PassThroughProfiler`) the events are built timed (`profiled_hooks.py`); with a hook tracer
(`Trainer(trace_hooks=...)`) from traced hooks (`fulmen.debug.hook_tracer`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from fulmen.callbacks.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import is_overridden
from fulmen.core.module import LightningModule
from fulmen.profilers.base import PassThroughProfiler
from fulmen.trainer.hook_events import (
    CALLBACK_ONLY, CALLBACK_THEN_MODULE, EVENTS, MODULE_ACTING, MODULE_ONLY, STEP_METHODS, HookEvents, noop,
)
from fulmen.trainer.profiled_hooks import profiled, profiled_call_as, profiled_event, strategy_action
from fulmen.trainer.run import Run
from fulmen.trainer.stages import STAGES
from fulmen.trainer.step_signatures import (
    check_dataloader_idx, check_removed_hooks, takes_batch_idx, without_batch_idx,
)
from fulmen.strategies.strategy import STRATEGY_HOOKS
from fulmen.utilities.apply_func import move_data_to_device
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy


class HookDispatch(HookEvents):
    """Calls hooks for one run at a time; loops call its methods, never user objects directly.

    Args:
        trainer: what callbacks receive as their first argument (read for nothing else but the ranks).
        strategy: runs the step methods (precision context, DDP forward) and moves batches.
    """

    def __init__(self, trainer: Any, strategy: Strategy) -> None:
        self._trainer = trainer
        self._strategy = strategy
        self._captured_modes: dict[int, bool] = {}
        self.start(Run())

    def __getstate__(self) -> dict[str, Any]:
        # The prebuilt event functions are closures; a spawned process rebuilds them at bind().
        return {"_trainer": self._trainer, "_strategy": self._strategy, "_captured_modes": {}, "_run": Run(),
                "_module": None, "_callbacks": [], "_datamodule": None, "_profiler": None, "_tracer": None,
                "_everything": False}

    # -- binding ----------------------------------------------------------------------------------

    def start(self, run: Run) -> None:
        """Take a new run: its hook name is where `call_as` records the running hook; events are no-ops again."""
        for name in [name for name in vars(self) if name in EVENTS or name in _PROFILED_METHODS]:
            delattr(self, name)  # back to the declared no-op of `HookEvents` (and the unprofiled methods)
        self._run = run
        profiler = getattr(self._trainer, "profiler", None)
        # Decided once per run: without a profiler (or tracer) nothing below is wrapped and no step checks for one.
        self._profiler = None if profiler is None or isinstance(profiler, PassThroughProfiler) else profiler
        if self._profiler is not None:
            self.call_as = profiled_call_as(self, self._profiler)
        self._tracer = getattr(self._trainer, "_hook_tracer", None) if run.fn is not None else None
        if self._tracer is not None:
            self._tracer.begin(self._trainer)
            self.call_as = self._tracer.wrap_call_as(self.call_as, self._data_owner)
        # Lightning calls every hook, overridden or not: profiled and traced runs do too, so each is reported.
        self._everything = self._profiler is not None or self._tracer is not None
        self._module: LightningModule | None = None
        self._callbacks: list[Callback] = []
        self._datamodule: LightningDataModule | None = None

    def bind(self) -> None:
        """Build one function per event for the run's module, callbacks (merged by now) and datamodule."""
        run = self._run
        module, callbacks = run.module, run.callbacks
        check_removed_hooks(module)
        self._module = module
        self._callbacks = callbacks
        self._datamodule = run.datamodule
        if self._tracer is not None:
            self._tracer.bound(callbacks)
        everything = self._everything
        for name in CALLBACK_THEN_MODULE:
            setattr(self, name, self._build_event(name, self._overriding_callbacks(name),
                                                  self._module_hook(name, always=everything)))
        for name in CALLBACK_ONLY:
            setattr(self, name, self._build_event(name, self._overriding_callbacks(name), None))
        for name in MODULE_ONLY:
            setattr(self, name, self._build_event(name, [], self._module_hook(name)))
        for name in MODULE_ACTING:
            setattr(self, name, self._build_event(name, [], self._traced(name, getattr(module, name), module)))
        # `manual_backward(loss, retain_graph=True)`: only this event forwards keyword arguments (never profiled:
        # Lightning times backward as the strategy's, around this hook).
        backward = self._traced("backward", module.backward, module)
        self.backward = self._build_event("backward", [], backward, keywords=True)
        strategy = self._strategy
        strategy._dispatch = self  # `strategy.batch_to_device` runs this run's transfer hooks
        for name in STEP_METHODS:
            # Step methods run through the strategy: precision contexts, and (DDP) the wrapped forward.
            step = strategy.step_function(name)
            if name == "training_step" and _overrides(strategy, "post_training_step"):
                step = _then(step, strategy.post_training_step)
            if not takes_batch_idx(getattr(module, name)):
                step = without_batch_idx(step)  # `def training_step(self, batch)`, as Lightning allows
            step = self._traced(name, step, owner=module)
            setattr(self, name, self._build_event(name, [], step, action=strategy_action(strategy, name)))
        for name in STRATEGY_HOOKS:
            # Lightning calls the strategy's hook after the callbacks' and the module's; chained only when overridden.
            if self._profiler is not None:
                hook = profiled(self._profiler, strategy_action(strategy, name), getattr(strategy, name))
                setattr(self, name, _then(getattr(self, name), self._traced(name, hook, strategy), pass_args=True))
            elif _overrides(strategy, name):
                hook = self._traced(name, getattr(strategy, name))
                setattr(self, name, _then(getattr(self, name), hook, pass_args=True))
        monitoring = [cb for cb in callbacks if getattr(cb, "_monitors_metrics", False)]
        others = [cb for cb in callbacks if not getattr(cb, "_monitors_metrics", False)]
        # Monitoring callbacks (checkpointing, early stopping) run after the module at epoch end so
        # they see what the module logged in its own `on_train_epoch_end`.
        name = "on_train_epoch_end"
        before = self._build_event(name, self._overriding_callbacks(name, others),
                                   self._module_hook(name, always=everything))
        after = self._build_event(name, self._overriding_callbacks(name, monitoring), None)
        self.on_train_epoch_end = _chain(before, after)
        self._bind_batch_transfer()

    def _overriding_callbacks(self, name: str, callbacks: list[Callback] | None = None) -> list[Callable]:
        chosen, everything = self._callbacks if callbacks is None else callbacks, self._everything
        return [self._traced(name, getattr(cb, name), cb) for cb in chosen
                if everything or is_overridden(name, cb, Callback)]

    def _module_hook(self, name: str, always: bool = False) -> Callable | None:
        if always or is_overridden(name, self._module, LightningModule):
            return self._traced(name, getattr(self._module, name), self._module)
        return None

    def _traced(self, name: str, fn: Callable, owner: Any = None) -> Callable:
        """`fn` recorded by the run's hook tracer (as is without one: wrapped at bind, never checked per step)."""
        return fn if self._tracer is None else self._tracer.wrap(name, fn, owner)

    def _build_event(self, name: str, callback_fns: list[Callable], module_fn: Callable | None,
                     keywords: bool = False, action: str | None = None) -> Callable:
        """`action`: the profiler's name for `module_fn` (default: `[LightningModule]{class}.{name}`)."""
        if not callback_fns and module_fn is None:
            return noop
        trainer, module, run = self._trainer, self._module, self._run
        if self._profiler is not None and not keywords:
            action = action or f"[LightningModule]{type(module).__name__}.{name}"
            return profiled_event(self._profiler, run, trainer, module, name, callback_fns, module_fn, action)
        if keywords:
            def event_with_keywords(*args: Any, **kwargs: Any) -> Any:
                previous = run.hook_name
                run.hook_name = name
                try:
                    return module_fn(*args, **kwargs)
                finally:
                    run.hook_name = previous

            return event_with_keywords

        def event(*args: Any) -> Any:
            previous = run.hook_name
            run.hook_name = name
            try:
                for fn in callback_fns:
                    fn(trainer, module, *args)
                return module_fn(*args) if module_fn is not None else None
            finally:
                run.hook_name = previous

        return event

    @property
    def active_profiler(self) -> Any:
        """The run's profiler, or None when it is a `PassThroughProfiler` (the loops then wrap nothing)."""
        return self._profiler

    @property
    def calls_every_hook(self) -> bool:
        """Whether this run calls every hook, overridden or not (profiled or traced runs, as Lightning does)."""
        return self._everything

    def call_as(self, name: str, fn: Callable, *args: Any) -> Any:
        """Run user code `fn(*args)` as hook `name`: `self.log` checks against it; the previous name comes back.

        The one way every path outside the prebuilt events (batch transfer, dataloader requests, stage,
        mode and checkpoint hooks) runs user code.
        """
        run = self._run
        previous = run.hook_name
        run.hook_name = name
        try:
            return fn(*args)
        finally:
            run.hook_name = previous

    def _data_owner(self, name: str) -> Any:
        """The datamodule if it overrides `name` (or set it to None: that stage has no data), else the module
        (Lightning's precedence)."""
        dm = self._datamodule
        if dm is not None and (name in vars(dm) or is_overridden(name, dm, LightningDataModule)):
            return dm
        return self._module

    def _bind_batch_transfer(self) -> None:
        module = self._module

        def chosen(name: str) -> Callable | None:
            owner = self._data_owner(name)
            if owner is self._datamodule and is_overridden(name, module, LightningModule):
                rank_zero_warn(f"You have overridden `{name}` in both the LightningModule and the "
                               "LightningDataModule; the datamodule's is used.")
            if owner is module and not is_overridden(name, module, LightningModule) and not self._everything:
                return None  # the default hooks: a plain move (profiled, Lightning's defaults run and are timed)
            return getattr(owner, name)

        self._before_transfer = chosen("on_before_batch_transfer")
        self._transfer = chosen("transfer_batch_to_device")
        self._after_transfer = chosen("on_after_batch_transfer")
        strategy = self._strategy
        # A Strategy subclass overriding `batch_to_device` is asked to move every batch (its super() runs the hooks).
        self._strategy_transfer = strategy.batch_to_device if _overrides(strategy, "batch_to_device") else None
        if self._profiler is not None:
            self.transfer_batch = profiled(self._profiler, strategy_action(strategy, "batch_to_device"),
                                           type(self).transfer_batch.__get__(self))

    # -- data -------------------------------------------------------------------------------------

    def transfer_batch(self, batch: Any, dataloader_idx: int) -> Any:
        """Move a batch to the strategy's device: `strategy.batch_to_device` if a subclass overrides it, else
        on_before_batch_transfer → transfer_batch_to_device → on_after_batch_transfer."""
        if self._strategy_transfer is not None:
            return self._strategy_transfer(batch, dataloader_idx=dataloader_idx)
        return self.run_transfer_hooks(batch, dataloader_idx, self._strategy.root_device)

    def run_transfer_hooks(self, batch: Any, dataloader_idx: int, device: Any) -> Any:
        """on_before_batch_transfer → transfer_batch_to_device (or a plain move) → on_after_batch_transfer."""
        if self._before_transfer is not None:
            batch = self.call_as("on_before_batch_transfer", self._before_transfer, batch, dataloader_idx)
        if self._transfer is not None:
            batch = self.call_as("transfer_batch_to_device", self._transfer, batch, device, dataloader_idx)
        else:
            batch = move_data_to_device(batch, device)
        if self._after_transfer is not None:
            batch = self.call_as("on_after_batch_transfer", self._after_transfer, batch, dataloader_idx)
        return batch

    def request_dataloader(self, stage: str) -> Any:
        """Call the `*_dataloader` hook for `stage` on the datamodule (if it defines one) or the module."""
        name = STAGES[stage].dataloader_hook
        owner = self._data_owner(name)
        hook = getattr(owner, name)
        if hook is None or (owner is self._module and not is_overridden(name, owner, LightningModule)):
            return None
        return self.call_as(name, hook)

    def has_dataloader_hook(self, stage: str) -> bool:
        name = STAGES[stage].dataloader_hook
        owner = self._data_owner(name)
        if getattr(owner, name) is None:
            return False  # `model.val_dataloader = None` turns the stage's data off, as in Lightning
        return owner is self._datamodule or is_overridden(name, self._module, LightningModule)

    def dataloader_hook_set_to_none(self, stage: str) -> str | None:
        """`'model.val_dataloader'` when the stage's chosen hook was replaced by None (that stage then has no data)."""
        name = STAGES[stage].dataloader_hook
        owner = self._data_owner(name)
        if getattr(owner, name) is not None:
            return None
        return f"{'datamodule' if owner is self._datamodule else 'model'}.{name}"

    def check_dataloader_idx(self, stage: str, several: bool) -> None:
        """Before a loop runs: step and batch hooks take `dataloader_idx` exactly when there are several loaders."""
        check_dataloader_idx(self._module, stage, several)

    def module_defines(self, method: str) -> bool:
        """Whether the module implements a step method (`training_step`, ...) or `configure_optimizers`."""
        return is_overridden(method, self._module, LightningModule)

    # -- stage boundaries -------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """DataModule first, then module; once per node (or once in all) as `prepare_data_per_node` says."""
        trainer = self._trainer
        for owner in (self._datamodule, self._module):
            if owner is None:
                continue
            base = LightningDataModule if owner is self._datamodule else LightningModule
            if not is_overridden("prepare_data", owner, base):
                continue  # the default does nothing (and Lightning neither calls nor profiles it)
            per_node = getattr(owner, "prepare_data_per_node", True)
            if (per_node and trainer.local_rank == 0) or (not per_node and trainer.global_rank == 0):
                self.call_as("prepare_data", owner.prepare_data)

    def setup(self, stage: str) -> None:
        """DataModule, then callbacks, then module."""
        self._stage_hook("setup", stage)

    def teardown(self, stage: str) -> None:
        """DataModule, then callbacks, then module."""
        self._stage_hook("teardown", stage)

    def _stage_hook(self, name: str, stage: str) -> None:
        trainer, module = self._trainer, self._module
        if self._datamodule is not None:
            self.call_as(name, getattr(self._datamodule, name), stage)
        for callback in self._callbacks:
            # Lightning passes `stage` by keyword to callbacks (a LambdaCallback's `**kwargs` sees it by name).
            self.call_as(name, partial(getattr(callback, name), stage=stage), trainer, module)
        self.call_as(name, getattr(module, name), stage)
        if name == "teardown" and self._tracer is not None:
            self._tracer.end()  # the run's last hook: print or write its trace

    def on_exception(self, exception: BaseException) -> None:
        """Callbacks, then the datamodule, then the strategy are told the run failed (Lightning's order)."""
        for callback in self._callbacks:
            self.call_as("on_exception", callback.on_exception, self._trainer, self._module, exception)
        if self._datamodule is not None:
            self.call_as("on_exception", self._datamodule.on_exception, exception)
        self._strategy.on_exception(exception)
        if self._tracer is not None:
            self._tracer.end()  # a failed run's trace shows the hooks that ran up to the failure

    # -- eval/train mode ---------------------------------------------------------------------------

    def model_eval(self, stage: str) -> None:
        """Remember each submodule's mode, then run the stage's `on_*_model_eval` hook."""
        self._captured_modes = {id(m): m.training for m in self._module.modules()}
        name = STAGES[stage].model_eval
        self.call_as(name, getattr(self._module, name))

    def model_train(self, stage: str) -> None:
        """Run an overridden `on_*_model_train` hook, or restore the modes `model_eval` remembered."""
        name = STAGES[stage].model_train
        if name is not None and is_overridden(name, self._module, LightningModule):
            self.call_as(name, getattr(self._module, name))
            return
        modes = self._captured_modes
        for submodule in self._module.modules():
            submodule.training = modes.get(id(submodule), submodule.training)

    # -- checkpoints --------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Callbacks, then the module may add to the checkpoint (a datamodule has no checkpoint hooks since Lightning
        2.0: its `state_dict` is saved)."""
        name = "on_save_checkpoint"
        for callback in self._callbacks:
            self.call_as(name, callback.on_save_checkpoint, self._trainer, self._module, checkpoint)
        self.call_as(name, self._module.on_save_checkpoint, checkpoint)

    def module_on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The module reads the checkpoint before its weights are loaded, and before the callbacks
        (`callbacks_on_load_checkpoint`): Lightning's exception to callbacks-first."""
        self.call_as("on_load_checkpoint", self._module.on_load_checkpoint, checkpoint)

    def callbacks_on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for callback in self._callbacks:
            self.call_as("on_load_checkpoint", callback.on_load_checkpoint, self._trainer, self._module, checkpoint)


# Methods `start` replaces per run with a profiled version (instance attributes) while a profiler is active.
_PROFILED_METHODS = ("call_as", "transfer_batch")


def _overrides(strategy: Any, name: str) -> bool:
    from fulmen.strategies.strategy import Strategy

    return getattr(type(strategy), name) is not getattr(Strategy, name)


def _then(first: Callable, second: Callable, pass_args: bool = False) -> Callable:
    """`first(*args)`, then `second(*args)` (or `second()`); returns what `first` returned."""
    def both(*args: Any) -> Any:
        result = first(*args)
        if pass_args:
            second(*args)
        else:
            second()
        return result

    return both


def _chain(first: Callable, second: Callable) -> Callable:
    if second is noop:
        return first
    if first is noop:
        return second

    def both(*args: Any) -> None:
        first(*args)
        second(*args)

    return both
