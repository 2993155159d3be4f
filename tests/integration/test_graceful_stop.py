"""Graceful stop: SIGTERM/SIGINT during fit saves `signal-interrupted.ckpt`, runs teardown, ends the
process with 128 + the signal number, and a fresh process resumes from that file exactly.

The training runs in a subprocess (`tests/helpers/resume_script.py`); the signal is sent once the run
writes its "started" marker (after 3 batches), and the run waits there until the Trainer's handler has
received it, so the signal lands mid-run however fast or slow the machine is.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "resume_script.py"
STEPS = 300
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _script(out, *flags):
    return [sys.executable, str(SCRIPT), "--out", str(out), "--max-steps", str(STEPS), *map(str, flags)]


def _run(command):
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            timeout=180)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}"
    return result.stdout


def _read_until_started(process):
    """Read the run's output up to its "started" line (a blocking read: no polling, no sleeps)."""
    # Kills a run that never starts, so the test fails instead of hanging.
    guard = threading.Timer(120, process.kill)
    guard.start()
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("started at global_step"):
                return "".join(lines)
    finally:
        guard.cancel()
    pytest.fail(f"training ended ({process.wait()}) before it started:\n{''.join(lines)[-3000:]}")


def _signal_run(tmp_path, signum, exit_code, *flags):
    """Train under `tmp_path/run`, send `signum` after 3 batches, check the exit code; returns the output."""
    command = _script(tmp_path / "run" / "final.pt", "--started", tmp_path / "started", "--wait-for-signal", *flags)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        head = _read_until_started(process)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
        output = head + output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == exit_code, output[-3000:]
    return output


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "final.pt"
    _run(_script(out))
    return out


@pytest.mark.parametrize("signum, exit_code, checkpointing, checkpoint_dir", [
    (signal.SIGTERM, 143, [], "checkpoints"),  # no ModelCheckpoint: <default_root_dir>/checkpoints
    (signal.SIGINT, 130, ["--every-steps", "1000"], "every1000"),  # the ModelCheckpoint's dirpath
], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_checkpoint_runs_teardown_and_resumes_exactly(tmp_path, uninterrupted, signum, exit_code,
                                                                  checkpointing, checkpoint_dir):
    root, teardown = tmp_path / "run", tmp_path / "teardown"
    output = _signal_run(tmp_path, signum, exit_code, "--teardown", teardown, *checkpointing)
    checkpoint_path = root / checkpoint_dir / "signal-interrupted.ckpt"
    assert str(checkpoint_path) in output
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["global_step"] == 3  # the step during which the signal arrived is finished, then saved
    assert checkpoint["loops"]["fit_loop"]["phase"] == "between_batches"  # saved after a finished step
    assert teardown.read_text() == "fit"
    assert not (root / "final.pt").exists()  # the process ended inside `fit`

    resumed = tmp_path / "resumed" / "final.pt"
    _run(_script(resumed, "--resume", checkpoint_path))
    summary = json.loads(Path(str(resumed) + ".json").read_text())
    assert summary["start"]["global_step"] == checkpoint["global_step"]
    assert summary["global_step"] == STEPS
    expected = torch.load(uninterrupted, weights_only=True)
    actual = torch.load(resumed, weights_only=True)
    assert list(actual) == list(expected)
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def _assert_resumes_exactly(tmp_path, uninterrupted, name, resume, start_step, *flags):
    resumed = tmp_path / f"resumed_{name}" / "final.pt"
    _run(_script(resumed, "--resume", resume, *flags))
    assert json.loads(Path(str(resumed) + ".json").read_text())["start"]["global_step"] == start_step, name
    expected = torch.load(uninterrupted, weights_only=True)
    actual = torch.load(resumed, weights_only=True)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), (name, key)


@pytest.mark.parametrize("checkpointing", ["default", "save_last"])
def test_every_checkpoint_written_after_the_signal_resumes_exactly(tmp_path, uninterrupted, checkpointing):
    # The cut-short epoch still ends after the signal, and ModelCheckpoint saves then (and last.ckpt when
    # training ends): those files must resume mid-epoch like signal-interrupted.ckpt, not skip the epoch's rest.
    directory = tmp_path / "run" / "checkpoints"
    flags = ["--default-checkpointing"] if checkpointing == "default" else ["--last-in", directory]
    _signal_run(tmp_path, signal.SIGTERM, 143, *flags)
    signal_checkpoint = torch.load(directory / "signal-interrupted.ckpt", weights_only=True)
    stopped_at = signal_checkpoint["global_step"]
    names = sorted(os.listdir(directory))
    epoch_file = f"epoch={signal_checkpoint['epoch']}-step={stopped_at}.ckpt"
    last = {"last.ckpt"} if checkpointing == "save_last" else set()
    assert set(names) == {"signal-interrupted.ckpt", epoch_file} | last, names
    for name in names:
        checkpoint = torch.load(directory / name, weights_only=True)
        loop, signal_loop = checkpoint["loops"]["fit_loop"], signal_checkpoint["loops"]["fit_loop"]
        for key in ("current_epoch", "global_step", "phase", "batches_done", "epoch_finished"):
            assert loop[key] == signal_loop[key], (name, key)
        assert checkpoint["epoch"] == signal_checkpoint["epoch"], name
        _assert_resumes_exactly(tmp_path, uninterrupted, name, directory / name, stopped_at)
    if checkpointing == "save_last":  # a re-queued job asking for "last" in a fresh process
        _assert_resumes_exactly(tmp_path, uninterrupted, "last", "last", stopped_at, *flags)
