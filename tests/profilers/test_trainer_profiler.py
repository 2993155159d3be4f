"""`Trainer(profiler=...)`: the actions a run records (names and counts as Lightning 2.6.6's), report files,
and that a Trainer without a profiler wraps nothing."""

import logging
from collections import Counter

import pytest
import torch

import fulmen as L
from fulmen.demos.boring_classes import BoringModel
from fulmen.profilers import AdvancedProfiler, PassThroughProfiler, Profiler, PyTorchProfiler, SimpleProfiler
from fulmen.trainer.hook_events import noop
from fulmen.utilities.exceptions import MisconfigurationException

_M, _S = "[LightningModule]BoringModel.", "[Strategy]SingleDeviceStrategy."
_CHECKPOINT = ("ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
               "'train_time_interval': None}")

# Recorded with lightning 2.6.6 (`lightning.pytorch.profilers.SimpleProfiler`, `recorded_durations` counts) on
# BoringModel with max_epochs=2, limit_train_batches=4, limit_val_batches=2, limit_test_batches=3,
# limit_predict_batches=2: what each of fit, validate, test, predict adds, in this order.
_MODULE_AND_LOOPS = {
    "fit": {
        _M + "configure_callbacks": 1, _M + "configure_gradient_clipping": 8, _M + "configure_optimizers": 1,
        _M + "lr_scheduler_step": 2, _M + "on_after_backward": 8, _M + "on_after_batch_transfer": 14,
        _M + "on_before_backward": 8, _M + "on_before_batch_transfer": 14, _M + "on_before_optimizer_step": 8,
        _M + "on_before_zero_grad": 8, _M + "on_fit_end": 1, _M + "on_fit_start": 1, _M + "on_train_batch_end": 8,
        _M + "on_train_batch_start": 8, _M + "on_train_end": 1, _M + "on_train_epoch_end": 2,
        _M + "on_train_epoch_start": 2, _M + "on_train_start": 1, _M + "on_validation_batch_end": 6,
        _M + "on_validation_batch_start": 6, _M + "on_validation_end": 3, _M + "on_validation_epoch_end": 3,
        _M + "on_validation_epoch_start": 3, _M + "on_validation_model_eval": 3,
        _M + "on_validation_model_zero_grad": 2, _M + "on_validation_start": 3, _M + "optimizer_step": 8,
        _M + "optimizer_zero_grad": 8, _M + "setup": 1, _M + "teardown": 1, _M + "train_dataloader": 1,
        _M + "transfer_batch_to_device": 14, _M + "val_dataloader": 1, _S + "backward": 8, _S + "batch_to_device": 14,
        _S + "on_train_batch_start": 8, _S + "on_train_end": 1, _S + "on_train_start": 1, _S + "on_validation_end": 3,
        _S + "on_validation_start": 3, _S + "training_step": 8, _S + "validation_step": 6,
        "[_EvaluationLoop].val_next": 6, "[_TrainingEpochLoop].train_dataloader_next": 8, "run_training_batch": 8,
        "run_training_epoch": 2,
    },
    "validate": {
        _M + "configure_callbacks": 1, _M + "on_after_batch_transfer": 2, _M + "on_before_batch_transfer": 2,
        _M + "on_validation_batch_end": 2, _M + "on_validation_batch_start": 2, _M + "on_validation_end": 1,
        _M + "on_validation_epoch_end": 1, _M + "on_validation_epoch_start": 1, _M + "on_validation_model_eval": 1,
        _M + "on_validation_start": 1, _M + "setup": 1, _M + "teardown": 1, _M + "transfer_batch_to_device": 2,
        _M + "val_dataloader": 1, _S + "batch_to_device": 2, _S + "on_validation_end": 1, _S + "on_validation_start": 1,
        _S + "validation_step": 2, "[_EvaluationLoop].val_next": 2,
    },
    "test": {
        _M + "configure_callbacks": 1, _M + "on_after_batch_transfer": 3, _M + "on_before_batch_transfer": 3,
        _M + "on_test_batch_end": 3, _M + "on_test_batch_start": 3, _M + "on_test_end": 1, _M + "on_test_epoch_end": 1,
        _M + "on_test_epoch_start": 1, _M + "on_test_model_eval": 1, _M + "on_test_start": 1, _M + "setup": 1,
        _M + "teardown": 1, _M + "test_dataloader": 1, _M + "transfer_batch_to_device": 3, _S + "batch_to_device": 3,
        _S + "on_test_end": 1, _S + "on_test_start": 1, _S + "test_step": 3, "[_EvaluationLoop].test_next": 3,
    },
    "predict": {
        _M + "configure_callbacks": 1, _M + "on_after_batch_transfer": 2, _M + "on_before_batch_transfer": 2,
        _M + "on_predict_batch_end": 2, _M + "on_predict_batch_start": 2, _M + "on_predict_end": 1,
        _M + "on_predict_epoch_end": 1, _M + "on_predict_epoch_start": 1, _M + "on_predict_model_eval": 1,
        _M + "on_predict_start": 1, _M + "predict_dataloader": 1, _M + "setup": 1, _M + "teardown": 1,
        _M + "transfer_batch_to_device": 2, _S + "batch_to_device": 2, _S + "on_predict_end": 1,
        _S + "on_predict_start": 1, _S + "predict_step": 2, "[_PredictionLoop].predict_next": 2,
    },
}
# With the default callbacks, each of them (checkpoint, model summary, progress bar) records these (same run).
_EACH_CALLBACK = {
    "fit": {
        "on_after_backward": 8, "on_before_backward": 8, "on_before_optimizer_step": 8, "on_before_zero_grad": 8,
        "on_fit_end": 1, "on_fit_start": 1, "on_sanity_check_end": 1, "on_sanity_check_start": 1,
        "on_save_checkpoint": 2, "on_train_batch_end": 8, "on_train_batch_start": 8, "on_train_end": 1,
        "on_train_epoch_end": 2, "on_train_epoch_start": 2, "on_train_start": 1, "on_validation_batch_end": 6,
        "on_validation_batch_start": 6, "on_validation_end": 3, "on_validation_epoch_end": 3,
        "on_validation_epoch_start": 3, "on_validation_start": 3, "setup": 1, "teardown": 1,
    },
    "validate": {"on_validation_batch_end": 2, "on_validation_batch_start": 2, "on_validation_end": 1,
                 "on_validation_epoch_end": 1, "on_validation_epoch_start": 1, "on_validation_start": 1, "setup": 1,
                 "teardown": 1},
    "test": {"on_test_batch_end": 3, "on_test_batch_start": 3, "on_test_end": 1, "on_test_epoch_end": 1,
             "on_test_epoch_start": 1, "on_test_start": 1, "setup": 1, "teardown": 1},
    "predict": {"on_predict_batch_end": 2, "on_predict_batch_start": 2, "on_predict_end": 1,
                "on_predict_epoch_end": 1, "on_predict_epoch_start": 1, "on_predict_start": 1, "setup": 1,
                "teardown": 1},
}
_WITH_CHECKPOINTS = {"fit": {_M + "on_save_checkpoint": 2, "save_checkpoint": 2}}


def _expected(default_callbacks):
    """Cumulative counts after each stage (SimpleProfiler keeps its records across a Trainer's stages)."""
    total, after = Counter(), {}
    for stage, counts in _MODULE_AND_LOOPS.items():
        total.update(counts)
        if default_callbacks:
            for label in (_CHECKPOINT, "ModelSummary", "TQDMProgressBar"):
                total.update({f"[Callback]{label}.{hook}": n for hook, n in _EACH_CALLBACK[stage].items()})
            total.update(_WITH_CHECKPOINTS.get(stage, {}))
        after[stage] = dict(total)
    return after


def _all_stages(tmp_path, profiler, **flags):
    flags = dict(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=4, limit_val_batches=2,
                 limit_test_batches=3, limit_predict_batches=2, profiler=profiler, **flags)
    model, trainer = BoringModel(), L.Trainer(**flags)
    seen = {}
    for stage, run in (("fit", trainer.fit), ("validate", trainer.validate), ("test", trainer.test),
                       ("predict", trainer.predict)):
        run(model, **({} if stage in ("fit", "predict") else {"verbose": False}))
        seen[stage] = {action: len(times) for action, times in profiler.recorded_durations.items()}
    return trainer, seen


def test_simple_profiler_records_lightnings_actions_and_counts_without_callbacks(tmp_path):
    profiler = SimpleProfiler()
    _, seen = _all_stages(tmp_path, profiler, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False)
    assert seen == _expected(default_callbacks=False)


def test_simple_profiler_records_every_callbacks_hooks_under_its_state_key(tmp_path):
    profiler = SimpleProfiler()
    _, seen = _all_stages(tmp_path, profiler, log_every_n_steps=1)
    assert seen == _expected(default_callbacks=True)


def test_report_files_are_written_per_stage_named_as_lightning(tmp_path):
    profiler = SimpleProfiler(filename="perf")
    trainer, _ = _all_stages(tmp_path, profiler, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)
    assert profiler.dirpath == str(tmp_path)  # no dirpath given: the Trainer's log_dir
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "fit-perf.txt", "predict-perf.txt", "test-perf.txt", "validate-perf.txt"]
    fit_report = (tmp_path / "fit-perf.txt").read_text()
    assert fit_report.startswith("FIT Profiler Report")
    assert "run_training_batch" in fit_report and "[_PredictionLoop].predict_next" not in fit_report
    predict_report = (tmp_path / "predict-perf.txt").read_text()
    assert predict_report.startswith("PREDICT Profiler Report") and "[_PredictionLoop].predict_next" in predict_report


def test_report_goes_to_the_log_without_a_filename(tmp_path, caplog):
    trainer = L.Trainer(default_root_dir=tmp_path, profiler="simple", max_epochs=1, limit_train_batches=2,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with caplog.at_level(logging.INFO, logger="fulmen.profilers"):
        trainer.fit(BoringModel())
    report = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("fulmen.profilers"))
    assert "FIT Profiler Report" in report and "run_training_epoch" in report
    assert list(tmp_path.iterdir()) == []


def test_without_a_profiler_the_trainer_has_a_passthrough_and_wraps_nothing(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    assert type(trainer.profiler) is PassThroughProfiler
    trainer.fit(BoringModel())
    hooks = trainer._hooks
    assert hooks.active_profiler is None
    # Events nobody overrides stay the shared no-op; batch transfer and hook calls are the class's own methods.
    assert hooks.on_train_batch_end is noop and hooks.on_sanity_check_start is noop
    assert "call_as" not in vars(hooks) and "transfer_batch" not in vars(hooks)


def test_a_profiled_run_then_an_unprofiled_one_unwraps_the_hooks(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, profiler="simple", max_epochs=1, limit_train_batches=2,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(BoringModel())
    assert "call_as" in vars(trainer._hooks)
    trainer.profiler = PassThroughProfiler()
    trainer.validate(BoringModel(), verbose=False)
    assert "call_as" not in vars(trainer._hooks) and trainer._hooks.on_validation_batch_end is noop


@pytest.mark.parametrize(("name", "kind"), [("simple", SimpleProfiler), ("Advanced", AdvancedProfiler),
                                            ("PYTORCH", PyTorchProfiler), (None, PassThroughProfiler)])
def test_profiler_by_name(name, kind):
    assert type(L.Trainer(profiler=name, logger=False).profiler) is kind


def test_an_instance_is_used_as_given():
    profiler = SimpleProfiler(extended=False)
    assert L.Trainer(profiler=profiler, logger=False).profiler is profiler


@pytest.mark.parametrize("value", ["xla", "fancy", object()])
def test_an_unknown_profiler_is_refused_with_the_choices(value):
    with pytest.raises(MisconfigurationException, match="simple.*advanced.*pytorch|not a profiler"):
        L.Trainer(profiler=value, logger=False)


def test_barebones_refuses_a_profiler():
    with pytest.raises(ValueError, match="barebones"):
        L.Trainer(barebones=True, profiler="simple")


class _Recorder(Profiler):
    """A custom profiler (the base's contract): sees every start/stop, in order, balanced."""

    def __init__(self):
        super().__init__()
        self.open, self.seen = [], []

    def start(self, action_name):
        self.open.append(action_name)
        self.seen.append(action_name)

    def stop(self, action_name):
        assert self.open.pop() == action_name  # nested actions close innermost first


def test_a_custom_profiler_gets_nested_balanced_actions_and_is_described_per_stage(tmp_path):
    profiler = _Recorder()
    stages = []
    profiler.describe = lambda: stages.append(profiler._stage)
    trainer = L.Trainer(default_root_dir=tmp_path, profiler=profiler, max_epochs=1, limit_train_batches=2,
                        limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(BoringModel())
    trainer.test(BoringModel(), verbose=False)
    assert profiler.open == [] and stages == ["fit", "test"]
    assert profiler._local_rank is None  # one process: file names carry no rank
    first_batch = profiler.seen.index("run_training_batch")
    # The optimizer step runs the closure (training_step, backward) inside it, as in Lightning.
    assert profiler.seen[first_batch:first_batch + 3] == [
        "run_training_batch", _M + "optimizer_step", _S + "training_step"]


def test_manual_optimization_is_profiled_like_lightning(tmp_path):
    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            loss = self.step(batch)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()

    profiler = SimpleProfiler()
    trainer = L.Trainer(default_root_dir=tmp_path, profiler=profiler, max_epochs=1, limit_train_batches=3,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(Manual())
    counts = {action: len(times) for action, times in profiler.recorded_durations.items()}
    assert counts["run_training_batch"] == 3 and counts["optimizer_step"] == 3
    assert counts["[Strategy]SingleDeviceStrategy.training_step"] == 3
    # Lightning times neither the automatic-only hooks nor the strategy's backward here.
    assert not {_S + "backward", _M + "optimizer_step", _M + "configure_gradient_clipping"} & counts.keys()


def test_profiled_training_matches_unprofiled_training_exactly(tmp_path):
    def train(profiler):
        torch.manual_seed(3)
        model = BoringModel()
        L.Trainer(default_root_dir=tmp_path, profiler=profiler, max_epochs=2, limit_train_batches=3,
                  limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model)
        return [p.detach().clone() for p in model.parameters()]

    for plain, profiled in zip(train(None), train(SimpleProfiler())):
        assert torch.equal(plain, profiled)


def test_profilers_load_only_when_asked_for():
    import subprocess
    import sys

    code = ("import sys, fulmen; fulmen.Trainer(logger=False); "
            "print(sorted(m for m in sys.modules if m.startswith('fulmen.profilers.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['fulmen.profilers.base', 'fulmen.profilers.profiler']"
