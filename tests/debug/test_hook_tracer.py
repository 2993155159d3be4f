"""`Trainer(trace_hooks=...)` records every hook call; the trace equals `expected_hooks`' prediction."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fulmen as L
from fulmen.debug import HookTracer, expected_hooks
from fulmen.profilers import SimpleProfiler
from helpers.hook_trace_runs import QUIET, Plain, TracedModule, as_recorded_by_lightning, comparable, traced_run

GOLDEN = json.loads((Path(__file__).parent / "golden_lightning_hooks.json").read_text())


def _check(tmp_path, stage, **flags):
    assert comparable(traced_run(tmp_path, stage, **flags)) == comparable(expected_hooks(stage, **flags))


@pytest.mark.parametrize("val_check_interval", [None, 2, 0.5])
@pytest.mark.parametrize("check_val_every_n_epoch", [1, 2])
@pytest.mark.parametrize("accumulate_grad_batches", [1, 2])
def test_fit_trace_equals_prediction(tmp_path, val_check_interval, check_val_every_n_epoch, accumulate_grad_batches):
    _check(tmp_path, "fit", max_epochs=2, train_batches=3, val_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
           val_check_interval=val_check_interval, check_val_every_n_epoch=check_val_every_n_epoch,
           accumulate_grad_batches=accumulate_grad_batches)


@pytest.mark.parametrize("accumulate_grad_batches", [1, 2])
def test_fit_trace_equals_prediction_with_an_interval_across_epochs(tmp_path, accumulate_grad_batches):
    _check(tmp_path, "fit", max_epochs=2, train_batches=3, val_batches=1, val_check_interval=2,
           check_val_every_n_epoch=None, num_sanity_val_steps=0, accumulate_grad_batches=accumulate_grad_batches)


@pytest.mark.parametrize("flags", [
    dict(automatic_optimization=False, limit_val_batches=0),
    dict(lr_scheduler_interval="step", accumulate_grad_batches=2, limit_val_batches=0),
    dict(lr_scheduler_interval="epoch", max_steps=4, val_batches=[1, 2]),
    dict(callbacks=3, limit_train_batches=0.5, num_sanity_val_steps=-1, val_batches=[2, 1]),
])
def test_fit_trace_equals_prediction_for_other_runs(tmp_path, flags):
    flags = {"max_epochs": 2, "train_batches": 4, "val_batches": 1, **flags}
    _check(tmp_path, "fit", **flags)


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluation_trace_equals_prediction(tmp_path, stage):
    _check(tmp_path, stage, val_batches=[2, 1] if stage == "validate" else 2, test_batches=3, predict_batches=2)


@pytest.mark.parametrize("resume_from", [(1, 0), (1, 2)], ids=["from_epoch_end", "mid_epoch"])
@pytest.mark.parametrize("accumulate_grad_batches", [1, 2])
def test_resumed_training_trace_equals_prediction(tmp_path, resume_from, accumulate_grad_batches):
    """From `on_train_start` on: where training continues (no `on_train_epoch_start` inside an epoch), the batches
    left, their steps and validations."""
    flags = dict(max_epochs=2, train_batches=3, val_batches=1, num_sanity_val_steps=0, resume_from=resume_from,
                 accumulate_grad_batches=accumulate_grad_batches)
    traced, predicted = comparable(traced_run(tmp_path, "fit", **flags)), comparable(expected_hooks("fit", **flags))

    def training(records):
        start = next(i for i, r in enumerate(records) if r["hook"] == "on_train_start" and r["owner"] == "module")
        return records[start + 1:]

    assert training(traced) == training(predicted)
    assert [r["hook"] for r in traced].count("on_load_checkpoint") == 2  # the module and the callback


def test_resumed_fit_runs_the_validation_due_after_the_saved_batch(tmp_path):
    """A checkpoint saved in `on_train_batch_end` just before a due validation: fulmen runs that validation when
    training resumes, as the uninterrupted run did; Lightning 2.6 skips it. Everything else is Lightning's order."""
    entry = GOLDEN["resume_before_due_validation"]
    flags = dict(entry["flags"], resume_from=tuple(entry["flags"]["resume_from"]))
    traced = as_recorded_by_lightning(traced_run(tmp_path, "fit", **flags))
    start = traced.index(["module", "on_train_start", "train", 0, None, None]) + 1
    end = traced.index(["module", "on_validation_model_train", "validate", 0, None, None], start) + 1
    assert traced[start][1] == "on_validation_model_zero_grad"  # the saved batch stepped: Lightning's first call
    assert [call[1] for call in traced[start:end]].count("validation_step") == 1
    assert traced[:start] + traced[end:] == entry["calls"]


def test_resumed_fit_with_max_steps_trains_each_remaining_epoch_once(tmp_path):
    """Lightning 2.6.6 (the golden entry) repeats the saved epoch's `on_train_epoch_end` and stops after epoch 1;
    fulmen trains epochs 1 and 2, as the uninterrupted run, and is otherwise in Lightning's order."""
    entry = GOLDEN["resume_epoch_end_max_steps"]
    flags = dict(entry["flags"], resume_from=tuple(entry["flags"]["resume_from"]))
    traced = as_recorded_by_lightning(traced_run(tmp_path, "fit", **flags))

    def epochs(calls):
        return [(call[1], call[3]) for call in calls
                if call[0] == "module" and call[1] in ("on_train_epoch_start", "on_train_epoch_end")]

    assert epochs(entry["calls"]) == [("on_train_epoch_end", 0), ("on_train_epoch_start", 1), ("on_train_epoch_end", 1)]
    assert epochs(traced) == [("on_train_epoch_start", 1), ("on_train_epoch_end", 1),
                              ("on_train_epoch_start", 2), ("on_train_epoch_end", 2)]
    setup = [call[1] for call in entry["calls"]].index("val_dataloader")  # up to the training data request
    assert traced[:setup] == entry["calls"][:setup]
    assert traced == as_recorded_by_lightning(expected_hooks("fit", **flags))


def test_resumed_fit_finishes_the_epoch_whose_last_batch_was_saved(tmp_path):
    """Saved in `on_train_batch_end` of epoch 0's last batch: fulmen runs epoch 0's `on_train_epoch_end` and epoch 1's
    `on_train_epoch_start` on resume (as the uninterrupted run); Lightning 2.6.6 calls neither and goes on with epoch
    1's batches. Otherwise Lightning's order."""
    entry = GOLDEN["resume_last_batch"]
    flags = dict(entry["flags"], resume_from=tuple(entry["flags"]["resume_from"]))
    traced = as_recorded_by_lightning(traced_run(tmp_path, "fit", **flags))
    assert traced == as_recorded_by_lightning(expected_hooks("fit", **flags))
    start = traced.index(["module", "on_train_start", "train", 0, None, None]) + 1
    assert [(call[1], call[3]) for call in traced[start:start + 4]] == [
        ("on_train_epoch_end", 0), ("on_train_epoch_end", 0), ("on_train_epoch_start", 1), ("on_train_epoch_start", 1)]
    first_batch = ["module", "on_before_batch_transfer", "train", 1, None, None]
    lightning = entry["calls"]
    assert lightning[lightning.index(first_batch) - 1] == ["module", "on_train_start", "train", 1, None, None]
    # From epoch 1's first batch on both agree, but for when the validation data is asked for (fulmen: at the first
    # validation, as epoch 0 did not validate; Lightning: at its restart in epoch 1, which validates).
    assert ([call for call in traced[traced.index(first_batch):] if call[1] != "val_dataloader"]
            == lightning[lightning.index(first_batch):])


def test_validation_data_requested_at_first_validation_when_first_epoch_skips_it(tmp_path):
    entry = GOLDEN["fit_every_2_no_sanity"]
    assert as_recorded_by_lightning(traced_run(tmp_path, "fit", **entry["flags"])) == entry["calls"]


@pytest.mark.parametrize("config", sorted(name for name in GOLDEN if not name.startswith("_")
                                          and name != "fit_every_2_no_sanity" and "fulmen_differs" not in GOLDEN[name]))
def test_trace_equals_lightnings_recorded_order(tmp_path, config):
    """Also resumed fits (Lightning restores weights and callback states before `configure_optimizers`, counters
    after `on_fit_start`, skips the sanity check when resuming inside an epoch) and `ckpt_path` in evaluation."""
    entry = GOLDEN[config]
    flags = dict(entry["flags"])
    if "resume_from" in flags:
        flags["resume_from"] = tuple(flags["resume_from"])
    assert as_recorded_by_lightning(traced_run(tmp_path, entry["stage"], **flags)) == entry["calls"]


# -- what a record holds -------------------------------------------------------------------------------------


class Saving(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.save_checkpoint(Path(trainer.default_root_dir) / "epoch.ckpt")


def test_records_name_owners_with_their_class_and_nest_calls(tmp_path):
    tracer = HookTracer()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                        callbacks=[Plain(), Saving()], trace_hooks=tracer, **QUIET)
    datamodule = L.LightningDataModule.from_datasets(torch.utils.data.TensorDataset(torch.randn(4, 4)), batch_size=2)
    trainer.fit(TracedModule(), datamodule=datamodule)
    assert trainer.hook_tracer is tracer
    setup = [(r["owner"], r["owner_class"]) for r in tracer.records if r["hook"] == "setup"]
    assert setup == [("datamodule", "LightningDataModule"), ("callback[0]", "Plain"), ("callback[1]", "Saving"),
                     ("module", "TracedModule")]
    epoch_end = [r for r in tracer.records if r["hook"] == "on_train_epoch_end"]
    saved = next(r for r in tracer.records if r["hook"] == "on_save_checkpoint")
    assert saved["depth"] == 1 and tracer.records.index(saved) > tracer.records.index(epoch_end[1])
    assert [r["owner"] for r in tracer.records if r["hook"] == "train_dataloader"] == ["datamodule"]


def test_records_continue_over_runs_of_one_trainer(tmp_path):
    tracer = HookTracer()
    trainer = L.Trainer(default_root_dir=tmp_path, trace_hooks=tracer, **QUIET)
    trainer.validate(TracedModule(), verbose=False)
    trainer.test(TracedModule(), verbose=False)
    assert sorted({(r["run"], r["fn"]) for r in tracer.records}) == [(0, "validate"), (1, "test")]
    assert tracer.tree().splitlines()[0] == "validate (run 0)"
    assert tracer.tree(run=1).splitlines()[0] == "test"


def test_a_failed_run_is_traced_up_to_the_failure(tmp_path):
    class Failing(TracedModule):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            raise RuntimeError("boom")

    path = tmp_path / "trace.json"
    trainer = L.Trainer(default_root_dir=tmp_path, callbacks=[Plain()], trace_hooks=path, **QUIET)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.validate(Failing(), verbose=False)
    hooks = [(r["owner"], r["hook"]) for r in HookTracer.read_json(path)]
    assert hooks[-2:] == [("module", "validation_step"), ("callback[0]", "on_exception")]


def test_profiler_and_tracer_together(tmp_path):
    profiler = SimpleProfiler()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                        callbacks=[Plain()], profiler=profiler, trace_hooks=HookTracer(), **QUIET)
    trainer.fit(TracedModule())
    assert "[Callback]Plain.on_train_batch_start" in profiler.recorded_durations
    owners = [r["owner"] for r in trainer.hook_tracer.records if r["hook"] == "on_train_batch_start"]
    assert owners == ["callback[0]", "module", "strategy"] * 2  # profiled, Lightning calls the strategy's hook too


# -- outputs -------------------------------------------------------------------------------------------------


def test_tree_nests_stage_epoch_batch_and_folds_repeats(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1,
                        num_sanity_val_steps=0, callbacks=[Plain()], trace_hooks=HookTracer(), **QUIET)
    trainer.fit(TracedModule())
    lines = trainer.hook_tracer.tree().splitlines()
    assert lines[0] == "fit"
    assert "  epoch 0" in lines and "  epoch 1: same calls as epoch 0" in lines
    assert "    batch 1 .. batch 2: same calls as batch 0" in lines
    batch = lines.index("    batch 0")
    assert lines[batch + 4].split() == ["on_train_batch_start", "callback[0]", "Plain,", "module"]
    assert lines[batch + 5].split() == ["optimizer_step", "module"]
    assert lines[batch + 6].split() == ["training_step", "module"] and lines[batch + 6].startswith(" " * 8)
    assert lines[lines.index("    validation") + 1].split() == ["on_validation_model_zero_grad", "module"]
    assert lines[-1].split() == ["teardown", "callback[0]", "Plain,", "module"]


def test_trace_hooks_true_prints_each_runs_tree(tmp_path, capsys):
    trainer = L.Trainer(default_root_dir=tmp_path, limit_test_batches=1, trace_hooks=True, **QUIET)
    trainer.test(TracedModule(), verbose=False)
    printed = capsys.readouterr().out
    assert printed.strip() == trainer.hook_tracer.tree(run=0)
    assert printed.startswith("test\n") and "    test_step" in printed


def test_trace_hooks_path_writes_the_records_as_json(tmp_path):
    path = tmp_path / "hooks.json"
    trainer = L.Trainer(default_root_dir=tmp_path, limit_predict_batches=2, trace_hooks=str(path), **QUIET)
    trainer.predict(TracedModule())
    data = json.loads(path.read_text())
    assert data["format"] == "fulmen-hook-trace/1"
    assert data["records"] == trainer.hook_tracer.records == HookTracer.read_json(path)
    assert data["records"][-1] == {"run": 0, "fn": "predict", "stage": "predict", "epoch": 0, "batch_idx": None,
                                   "dataloader_idx": None, "depth": 0, "owner": "module",
                                   "owner_class": "TracedModule", "hook": "teardown"}


def test_read_json_refuses_other_files(tmp_path):
    path = tmp_path / "other.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a hook trace"):
        HookTracer.read_json(path)


@pytest.mark.parametrize("value", [1, "", 0.5, ["trace.json"]])
def test_bad_trace_hooks_values_are_refused(value):
    with pytest.raises(TypeError, match=r"trace_hooks=.*Pass True .* a file path .*HookTracer"):
        L.Trainer(trace_hooks=value, **QUIET)


def test_off_by_default_and_nothing_imported(tmp_path):
    code = ("import sys, fulmen as L; t = L.Trainer(logger=False, trace_hooks=False); "
            "assert t.hook_tracer is None; "
            "assert not any(m.startswith(('fulmen.debug.hook_tracer', 'fulmen.debug.hook_tree')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
