"""The stage vocabulary: for each `RunningStage`, the names Lightning uses for it, in one table.

Everything that used to spell out "val_dataloader", "limit_val_batches", "validation_step", ... per stage
reads it here. `RunningStage` is a `str` Enum, so `STAGES["validate"]` and `STAGES[RunningStage.VALIDATING]`
are the same entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from fulmen.trainer.state import RunningStage, TrainerFn


@dataclass(frozen=True)
class Stage:
    """Lightning's names for one stage.

    Attributes:
        dataloader_hook: the `*_dataloader` hook that supplies its data.
        limit_flag: the Trainer flag that caps its batches per epoch.
        step_method: the module method run on every batch.
        batch_hooks: the module's per-batch hooks (besides the step) that may receive `dataloader_idx`.
        model_eval: the hook that puts the model in eval mode before the loop (None: training).
        model_train: the hook that restores training mode after it (None: training, and predict, which has none).
        entry: the Trainer method that runs it on its own (`fit` for training).
        loader_argument: that method's dataloader argument.
        data_label: how "No ... data" errors name its data.
    """

    dataloader_hook: str
    limit_flag: str
    step_method: str
    batch_hooks: tuple[str, str]
    model_eval: str | None
    model_train: str | None
    entry: str
    loader_argument: str
    data_label: str

    @property
    def entry_point(self) -> str:
        """How a user passes this stage's dataloaders, e.g. `fit(train_dataloaders=...)`."""
        return f"{self.entry}({self.loader_argument}=...)"

    @property
    def loader_prefix(self) -> str:
        """The dataloader hook without `_dataloader` ("val", "test", ...), as errors about several loaders say it."""
        return self.dataloader_hook.removesuffix("_dataloader")


_VALIDATING = Stage("val_dataloader", "limit_val_batches", "validation_step",
                    ("on_validation_batch_start", "on_validation_batch_end"),
                    "on_validation_model_eval", "on_validation_model_train", "validate", "dataloaders", "validate")

STAGES: dict[RunningStage, Stage] = {
    RunningStage.TRAINING: Stage("train_dataloader", "limit_train_batches", "training_step",
                                 ("on_train_batch_start", "on_train_batch_end"), None, None, "fit",
                                 "train_dataloaders", "training"),
    # The sanity check runs the validation loop on the validation data.
    RunningStage.SANITY_CHECKING: _VALIDATING,
    RunningStage.VALIDATING: _VALIDATING,
    RunningStage.TESTING: Stage("test_dataloader", "limit_test_batches", "test_step",
                                ("on_test_batch_start", "on_test_batch_end"), "on_test_model_eval",
                                "on_test_model_train", "test", "dataloaders", "test"),
    # Lightning has no `on_predict_model_train`: predict restores the captured modes itself.
    RunningStage.PREDICTING: Stage("predict_dataloader", "limit_predict_batches", "predict_step",
                                   ("on_predict_batch_start", "on_predict_batch_end"), "on_predict_model_eval", None,
                                   "predict", "dataloaders", "predict"),
}

# The stages with their own data, in Lightning's order (the sanity check borrows validation's).
DATA_STAGES = (RunningStage.TRAINING, RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.PREDICTING)

# The loop each entry point starts with.
STAGE_OF_FN: dict[TrainerFn, RunningStage] = {
    TrainerFn.FITTING: RunningStage.TRAINING, TrainerFn.VALIDATING: RunningStage.VALIDATING,
    TrainerFn.TESTING: RunningStage.TESTING, TrainerFn.PREDICTING: RunningStage.PREDICTING,
}
