"""Run: everything one `fit` / `validate` / `test` / `predict` call owns, built fresh by `Trainer._run`.

Nothing in a Run survives into the next call: a second `fit`, a tuner trial or a `validate` after `fit`
starts from a new one. What does survive lives elsewhere and is documented there: construction-time
state (config, strategy, the Trainer's own callbacks, loggers) on the Trainer, the counters Lightning
keeps across runs (`current_epoch`, `global_step`) in `TrainerState`, and the published metrics
(`callback_metrics`, ...) in the `MetricsRouter`. The Trainer's read-only properties read the latest Run,
so after a call they still show what it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fulmen.callbacks.callback import Callback
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.core.module import LightningModule
    from fulmen.loops.evaluation_loop import EvaluationLoop
    from fulmen.loops.fit_loop import FitLoop
    from fulmen.loops.prediction_loop import PredictionLoop
    from fulmen.trainer.state import TrainerFn


@dataclass(eq=False)
class Run:
    """The state of one run. Each field names the one object that writes it.

    Attributes:
        fn: the entry point that is running (`Trainer._run`).
        module: the LightningModule being run (`Trainer._run`).
        datamodule: the LightningDataModule, if one was given (`Trainer._run`).
        callbacks: the Trainer's callbacks merged with the module's `configure_callbacks()` (`Trainer._run`).
        hook_name: the hook whose user code runs now, which `self.log` checks against (`HookDispatch`).
        given_loaders: dataloaders passed to the entry point, by stage; they win over hooks (`Trainer._run`).
        dataloaders: what each stage used, in the shape the user gave it (`DataSource`).
        train_loader: the training dataloader, requested once unless reloading (`DataSource`).
        num_training_batches: batches per training epoch (`DataSource`).
        num_sanity_val_batches: batches per val dataloader in the sanity check (`FitLoop`).
        num_val_batches: batches per val dataloader (`FitLoop`, `EvaluationLoop`).
        num_test_batches: batches per test dataloader (`EvaluationLoop`).
        num_predict_batches: batches per predict dataloader (`PredictionLoop`).
        is_last_batch: whether the training batch being run is the epoch's last (`FitLoop`).
        resume: where the checkpoint being resumed was taken, for the fit loop to continue there
            (`Checkpointing.restore`; consumed by `loops/resume.py`).
        fit_loop: the running FitLoop, whose position checkpoints record (`Trainer._run_stage`).
        predict_loop: the running PredictionLoop, which prediction writers read (`Trainer._run_stage`).
        evaluation_loop: the EvaluationLoop of a `validate`/`test` call (`Trainer._run_stage`).
        ckpt_path: the checkpoint this run restores (set by `trainer/checkpoint_restore.py`).
    """

    fn: TrainerFn | None = None
    module: LightningModule | None = None
    datamodule: LightningDataModule | None = None
    callbacks: list[Callback] = field(default_factory=list)
    hook_name: str | None = None
    given_loaders: dict[str, Any] = field(default_factory=dict)
    dataloaders: dict[str, Any] = field(default_factory=dict)
    train_loader: Any = None
    num_training_batches: int | float = float("inf")
    num_sanity_val_batches: list[int | float] = field(default_factory=list)
    num_val_batches: list[int | float] = field(default_factory=list)
    num_test_batches: list[int | float] = field(default_factory=list)
    num_predict_batches: list[int | float] = field(default_factory=list)
    is_last_batch: bool = False
    resume: dict[str, Any] | None = None
    fit_loop: FitLoop | None = None
    predict_loop: PredictionLoop | None = None
    evaluation_loop: EvaluationLoop | None = None
    ckpt_path: str | None = None
