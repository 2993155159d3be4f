"""PyTorchProfiler: torch.profiler over a run — operator table, Chrome traces, module names, schedule."""

import json

import pytest
import torch

import fulmen as L
from fulmen.demos.boring_classes import BoringModel
from fulmen.profilers import PyTorchProfiler
from fulmen.utilities.exceptions import MisconfigurationException


def _trainer(tmp_path, profiler, **flags):
    options = dict(default_root_dir=tmp_path, profiler=profiler, max_epochs=1, limit_train_batches=8,
                   limit_val_batches=2, limit_test_batches=2, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    options.update(flags)
    return L.Trainer(**options)


def _trace_names(path):
    return {event.get("name", "") for event in json.loads(path.read_text())["traceEvents"]}


def test_fit_writes_the_table_and_a_chrome_trace_named_as_lightning(tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="prof")
    _trainer(tmp_path, profiler).fit(BoringModel())
    names = sorted(path.name for path in tmp_path.iterdir())
    # As lightning 2.6.6 names them (checked with the same run): the trace of the step whose schedule saved last.
    assert names[1] == "fit-prof.txt"
    assert names[0].startswith("fit-prof-[Strategy]SingleDeviceStrategy.validation_step.")
    assert names[0].endswith(".pt.trace.json")
    report = (tmp_path / "fit-prof.txt").read_text()
    assert report.startswith("FIT Profiler Report") and "Self CPU" in report
    traced = _trace_names(tmp_path / names[0])
    assert "[pl][module]torch.nn.modules.linear.Linear: layer" in traced
    assert "[pl][profile][Strategy]SingleDeviceStrategy.validation_step" in traced


def test_record_module_names_off_leaves_module_ranges_out(tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="prof", record_module_names=False)
    _trainer(tmp_path, profiler).fit(BoringModel())
    trace = next(tmp_path.glob("*.pt.trace.json"))
    assert not any(name.startswith("[pl][module]") for name in _trace_names(trace))


def test_export_to_chrome_off_writes_only_the_report(tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="prof", export_to_chrome=False)
    _trainer(tmp_path, profiler).fit(BoringModel())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fit-prof.txt"]


def test_a_user_schedule_decides_which_training_steps_are_traced(tmp_path):
    schedule = torch.profiler.schedule(wait=2, warmup=1, active=2)
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="prof", schedule=schedule)
    _trainer(tmp_path, profiler, limit_val_batches=0).fit(BoringModel())
    traces = list(tmp_path.glob("*training_step*.pt.trace.json"))
    assert len(traces) == 1
    steps = {event["name"] for event in json.loads(traces[0].read_text())["traceEvents"]
             if event.get("name", "").startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#3", "ProfilerStep#4"}  # wait 2 steps, warm up 1, record the next 2


def _two_steps(profiler):
    """Two "training steps" of a few operators: the schedule starts recording after the first (as in Lightning,
    only actions named like a step advance it)."""
    for _ in range(2):
        with profiler.profile("[Strategy]X.training_step"):
            torch.ones(8).add(1).mul(2).sum()


def _always(step):
    return torch.profiler.ProfilerAction.RECORD


def test_row_limit_and_sort_key_shape_the_table():
    profiler = PyTorchProfiler(row_limit=3, sort_by_key="count", schedule=_always)
    _two_steps(profiler)
    table = profiler.summary().split("Profile stats for: records")[1]
    body = [line for line in table.splitlines() if line.strip() and not line.startswith("-")]
    assert len(body) == 1 + 3 + 1  # header, 3 rows, "Self CPU time total"
    counts = [int(line.split()[-1]) for line in body[1:4]]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"sort_by_key": "speed"}, MisconfigurationException, "sort_by_key: speed"),
    ({"table_kwargs": {"row_limit": 3}}, KeyError, "row_limit"),
    ({"table_kwargs": {"colour": True}}, KeyError, "colour"),
    ({"schedule": 3}, MisconfigurationException, "callable"),
    ({"schedule": lambda step: "record"}, MisconfigurationException, "ProfilerAction"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        PyTorchProfiler(**kwargs)


def test_table_kwargs_reach_the_table():
    tables = []
    for width in (40, 8):  # one after the other: torch runs one profiler at a time
        profiler = PyTorchProfiler(table_kwargs={"max_name_column_width": width}, schedule=_always)
        _two_steps(profiler)
        tables.append(profiler.summary())
    assert "aten::ones" in tables[0] and "aten::ones" not in tables[1]
