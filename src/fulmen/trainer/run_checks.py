"""Checks made at the start of a run, before any hook: does the module have what the stage needs?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.compiled import unwrap_compiled
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hparams import warn_unsaved_hparams
from fulmen.core.module import LightningModule
from fulmen.trainer.data_source import check_loaders
from fulmen.trainer.stages import STAGE_OF_FN, STAGES
from fulmen.trainer.state import RunningStage, TrainerFn
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.config import TrainerConfig
    from fulmen.trainer.data_source import DataSource
    from fulmen.trainer.hook_dispatch import HookDispatch
    from fulmen.trainer.run import Run
    from fulmen.trainer.trainer import Trainer


def check_run(run: Run, hooks: HookDispatch, config: TrainerConfig, data: DataSource) -> None:
    """Raise a MisconfigurationException naming what `run` is missing for its entry point, and how to add it."""
    fn, module = run.fn, run.module
    name = type(module).__name__
    running = STAGE_OF_FN[fn]
    stage = STAGES[running]
    if fn == TrainerFn.FITTING:
        if any(getattr(callback, "_is_checkpoint", False) for callback in run.callbacks):
            # Say before training, not at the first checkpoint, which hparams the checkpoints will leave out.
            for owner, label in ((module, "LightningModule"), (run.datamodule, "LightningDataModule")):
                if owner is not None:
                    warn_unsaved_hparams(owner, label)
        if not hooks.module_defines(stage.step_method):
            raise MisconfigurationException(
                f"{name} has no `training_step()`; `Trainer.fit` needs one that returns the loss for a batch."
            )
        _check_data(hooks, data, running, name)
        if module.automatic_optimization and not hooks.module_defines("configure_optimizers"):
            raise MisconfigurationException(
                f"No `configure_optimizers()` method defined: {name} needs it under automatic optimization, to "
                "return an optimizer (e.g. `return torch.optim.SGD(self.parameters(), lr=0.1)`)."
            )
        if not module.automatic_optimization:  # Lightning's order and words, then the fix
            if config.gradient_clip_val:
                raise MisconfigurationException(
                    "Automatic gradient clipping is not supported for manual optimization. Remove "
                    f"`Trainer(gradient_clip_val={config.gradient_clip_val})` and call "
                    "`self.clip_gradients(opt, gradient_clip_val=...)` in `training_step`, or switch to automatic "
                    "optimization."
                )
            if config.accumulate_grad_batches != 1:
                raise MisconfigurationException(
                    "Automatic gradient accumulation is not supported for manual optimization. Remove "
                    f"`Trainer(accumulate_grad_batches={config.accumulate_grad_batches})` and accumulate in "
                    "`training_step`, or switch to automatic optimization."
                )
        return
    if fn == TrainerFn.PREDICTING:
        if not (hooks.module_defines("predict_step") or hooks.module_defines("forward")):
            raise MisconfigurationException(
                f"{name} defines neither `predict_step()` nor `forward()`; `Trainer.predict` calls `predict_step`, "
                "whose default returns `self(batch)`. Define `predict_step(self, batch, batch_idx)` (or `forward`)."
            )
    elif not hooks.module_defines(stage.step_method):
        raise MisconfigurationException(
            f"{name} has no `{stage.step_method}()`; `Trainer.{fn.value}` runs it on every batch. Define it."
        )
    _check_data(hooks, data, running, name)


def _check_data(hooks: HookDispatch, data: DataSource, running: RunningStage, name: str) -> None:
    if data.has_source(running):
        return
    stage = STAGES[running]
    hook = hooks.dataloader_hook_set_to_none(running)
    if hook is not None:
        # A stage that needs data, whose dataloader hook was set to None: Lightning's TypeError.
        raise TypeError(f"`{hook}` is None, so `Trainer.{stage.entry}` has no data. Pass the dataloader "
                        f"as `Trainer.{stage.entry_point}` or make `{hook}` a method returning a DataLoader.")
    raise MisconfigurationException(
        f"No {stage.data_label} data: define `{stage.dataloader_hook}()` on {name} or on a LightningDataModule, or "
        f"pass `{stage.loader_argument}=` to `Trainer.{stage.entry}`."
    )


def check_entry_arguments(trainer: Trainer, fn: TrainerFn, model: Any, datamodule: Any,
                          *loaders: Any) -> LightningModule:
    """Check the arguments of fit/validate/test/predict; return the model to run (the last one if None, the
    LightningModule inside a `torch.compile`d one)."""
    model = unwrap_compiled(model, fn.value)
    if model is None and fn != TrainerFn.FITTING:
        model = trainer.lightning_module
        if model is None:
            raise TypeError(f"`Trainer.{fn.value}()` requires a `LightningModule` when it hasn't been passed in a "
                            "previous run: pass `model=`.")  # Lightning's words, then the fix
    if not isinstance(model, LightningModule):
        raise TypeError(f"`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got "
                        f"`{type(model).__qualname__}`. Wrap your nn.Module in a `fulmen.LightningModule`.")
    if datamodule is not None and any(loader is not None for loader in loaders):
        raise MisconfigurationException(
            f"`Trainer.{fn.value}()` received both dataloaders and a datamodule; pass only one of them.")
    if datamodule is not None and not isinstance(datamodule, LightningDataModule):
        raise TypeError(f"`datamodule` must be a `fulmen.LightningDataModule`; received {type(datamodule).__name__}.")
    names = ("train_dataloaders", "val_dataloaders") if fn == TrainerFn.FITTING else ("dataloaders",)
    for name, loader in zip(names, loaders):
        check_loaders(loader, f"`Trainer.{fn.value}({name}=...)` received")
    return model
