"""Graceful stop: SIGTERM/SIGINT during fit saves `signal-interrupted.ckpt`, runs teardown, ends the
process with 128 + the signal number, and a fresh process resumes from that file exactly.

The training runs in a subprocess (`tests/helpers/resume_script.py`), slowed down so the signal
arrives mid-training; the signal is sent once the run writes its "started" marker (after 3 batches).
"""

import json
import os
import signal
import subprocess
import sys
import time
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


def _wait_for(path, process, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended ({process.returncode}) before it started:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


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
    root, started, teardown = tmp_path / "run", tmp_path / "started", tmp_path / "teardown"
    command = _script(root / "final.pt", "--slow", 0.03, "--started", started, "--teardown", teardown, *checkpointing)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        _wait_for(started, process)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == exit_code, output[-3000:]
    checkpoint_path = root / checkpoint_dir / "signal-interrupted.ckpt"
    assert str(checkpoint_path) in output
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert 3 <= checkpoint["global_step"] < STEPS
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
