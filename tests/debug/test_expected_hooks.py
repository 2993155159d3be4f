"""`fulmen.debug.expected_hooks` predicts Lightning 2.6's hook order from flags; the README table is its output."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fulmen.debug import expected_hooks
from helpers.hook_trace_runs import as_recorded_by_lightning

GOLDEN = json.loads((Path(__file__).parent / "golden_lightning_hooks.json").read_text())
REPO = Path(__file__).resolve().parents[2]


def _flags(entry):
    flags = dict(entry["flags"])
    if "resume_from" in flags:
        flags["resume_from"] = tuple(flags["resume_from"])
    return flags


@pytest.mark.parametrize("config", sorted(name for name in GOLDEN if not name.startswith("_")
                                          and "fulmen_differs" not in GOLDEN[name] and "trace_only" not in GOLDEN[name]))
def test_prediction_equals_lightnings_recorded_order(config):
    """Each call (owner, hook, stage, epoch, batch and dataloader index) as Lightning 2.6.6 made it."""
    entry = GOLDEN[config]
    predicted = expected_hooks(entry["stage"], **_flags(entry))
    assert as_recorded_by_lightning(predicted) == entry["calls"]


def test_every_callback_runs_before_the_module_in_list_order():
    calls = [(r["owner"], r["hook"]) for r in expected_hooks("test", test_batches=1, callbacks=2)]
    start = calls.index(("callback[0]", "on_test_start"))
    assert calls[start:start + 3] == [("callback[0]", "on_test_start"), ("callback[1]", "on_test_start"),
                                      ("module", "on_test_start")]


def test_optional_module_hooks_can_be_left_out():
    hooks = {r["hook"] for r in expected_hooks("validate", val_batches=1, module_hooks=())}
    assert not hooks & {"prepare_data", "configure_model", "on_validation_model_train"}


def test_closure_calls_run_inside_optimizer_step_unless_accumulating():
    calls = expected_hooks("fit", max_epochs=1, train_batches=2, limit_val_batches=0, accumulate_grad_batches=2)
    steps = [(r["hook"], r["batch_idx"], r["depth"]) for r in calls if r["hook"] in ("training_step", "optimizer_step")]
    assert steps == [("training_step", 0, 0), ("optimizer_step", 1, 0), ("training_step", 1, 1)]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: expected_hooks("train"), "one of"),
    (lambda: expected_hooks("fit", max_epochs=1), "train_batches=N"),
    (lambda: expected_hooks("test"), "test_batches=N"),
    (lambda: expected_hooks("validate", val_batches=1, module_hooks=["on_fit_start"]), "optional"),
    (lambda: expected_hooks("fit", train_batches=1, lr_scheduler_interval="epochs"), "'step' or 'epoch'"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_unknown_trainer_flags_are_refused():
    with pytest.raises(TypeError, match="gradient_clip_val"):
        expected_hooks("fit", train_batches=1, gradient_clip_val=1.0)


def _generated_table():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "hook_order_table.py")], capture_output=True,
                            text=True, check=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": ""})
    return result.stdout.strip()


def test_table_script_prints_a_markdown_table_of_the_fit_order():
    table = _generated_table()
    lines = table.splitlines()
    assert lines[0].startswith("| #") and set(lines[1]) <= {"|", "-", " ", ":"}
    assert any("`on_train_batch_start`" in line for line in lines)
    assert table.index("`configure_optimizers`") < table.index("`on_fit_start`") < table.index("`teardown`")


def test_readme_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- hook-order-table:start -->\n(.*?)\n<!-- hook-order-table:end -->", readme, re.S)
    if match is None:
        pytest.skip("README.md has no hook-order table markers yet")
    assert match.group(1).strip() == _generated_table(), "regenerate it: python scripts/hook_order_table.py"
