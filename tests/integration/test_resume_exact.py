"""Exact resume: training resumed in a fresh process from any checkpoint ends bitwise where an
uninterrupted run ends.

Every run is a separate process of `tests/helpers/resume_script.py` (dropout, shuffled data with and
without an explicit generator, SGD with momentum, a per-step StepLR, validation every epoch, 7 batches
per epoch). The checkpoints cover each place a checkpoint can be taken: mid-epoch after a batch, on
the last batch of an epoch with validation still pending, at the end of validation, and at the end of
the epoch; with gradient accumulation they land on optimizer steps.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "resume_script.py"
MAX_STEPS = 20
ACCUMULATE_MAX_STEPS = 10

# name -> (training flags, checkpointing flags, max_steps); each run writes under its own directory.
# Resumed runs use the same training flags and no checkpointing.
REFERENCE_RUNS = {
    "plain": ([], [], MAX_STEPS),
    "global_rng": ([], ["--every-steps", "5", "--every-steps", "7", "--epoch-checkpoints", "--val-checkpoints"],
                   MAX_STEPS),
    # 7 batches, 2 per optimizer step: steps at batch_idx 1, 3, 5 and 6 (the incomplete last pair)
    "generator_accumulate": (["--generator", "--accumulate", "2"], ["--every-steps", "2", "--every-steps", "3"],
                             ACCUMULATE_MAX_STEPS),
}

# case id -> (reference run, checkpoint relative to its directory, (epoch, global_step, loop phase) in it)
RESUME_CASES = {
    "mid_epoch": ("global_rng", "every5/epoch=0-step=5.ckpt", (0, 5, "batch_end")),
    "last_batch_validation_pending": ("global_rng", "every7/epoch=0-step=7.ckpt", (0, 7, "batch_end")),
    "validation_end": ("global_rng", "val/epoch=1-step=14.ckpt", (1, 14, "validation")),
    "epoch_end": ("global_rng", "epochs/epoch=0-step=7.ckpt", (0, 7, "epoch_end")),
    "accumulate_mid_epoch": ("generator_accumulate", "every2/epoch=0-step=2.ckpt", (0, 2, "batch_end")),
    "accumulate_last_batch": ("generator_accumulate", "every2/epoch=0-step=4.ckpt", (0, 4, "batch_end")),
    # taken after batch_idx 5 of 7: the next batch is the epoch's last one
    "generator_second_to_last_batch": ("generator_accumulate", "every3/epoch=0-step=3.ckpt", (0, 3, "batch_end")),
}


def _command(out, flags, max_steps):
    return [sys.executable, str(SCRIPT), "--out", str(out), "--max-steps", str(max_steps), *flags]


def _run_parallel(commands):
    """Run the commands as separate processes, a few at a time; fail with the output of any that fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    width = max(2, min(4, os.cpu_count() or 2))
    pending = list(commands)
    while pending:
        batch, pending = pending[:width], pending[width:]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                     for command in batch]
        try:
            for command, process in zip(batch, processes):
                output, _ = process.communicate(timeout=180)
                assert process.returncode == 0, f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}"
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every reference training, then every resume, each in a fresh process; return their directories."""
    root = tmp_path_factory.mktemp("resume")
    _run_parallel([_command(root / name / "final.pt", [*flags, *saving], steps)
                   for name, (flags, saving, steps) in REFERENCE_RUNS.items()])
    resumes = []
    for case, (reference, checkpoint, _) in RESUME_CASES.items():
        flags, _, steps = REFERENCE_RUNS[reference]
        resumes.append(_command(root / case / "final.pt", [*flags, "--resume", str(root / reference / checkpoint)],
                                steps))
    _run_parallel(resumes)
    return root


def _summary(directory):
    return json.loads((directory / "final.pt.json").read_text())


def _assert_bitwise_equal(expected_path, actual_path):
    expected = torch.load(expected_path, weights_only=True)
    actual = torch.load(actual_path, weights_only=True)
    assert list(actual) == list(expected)
    differing = {name: (actual[name] - expected[name]).abs().max().item()
                 for name in expected if not torch.equal(actual[name], expected[name])}
    assert not differing, f"tensors differ after resuming (max abs difference): {differing}"


def test_checkpointing_does_not_change_training(runs):
    _assert_bitwise_equal(runs / "plain" / "final.pt", runs / "global_rng" / "final.pt")
    assert _summary(runs / "plain")["global_step"] == MAX_STEPS


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_matches_uninterrupted_run_bitwise(runs, case):
    reference, checkpoint_name, (epoch, step, phase) = RESUME_CASES[case]
    checkpoint = torch.load(runs / reference / checkpoint_name, weights_only=True)
    # the case really covers the place in the loop it is named after
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (epoch, step)
    assert checkpoint["loops"]["fit_loop"]["phase"] == phase

    summary = _summary(runs / case)
    assert summary["start"]["global_step"] == step  # it resumed, rather than training from scratch
    assert summary["global_step"] == _summary(runs / reference)["global_step"]
    _assert_bitwise_equal(runs / reference / "final.pt", runs / case / "final.pt")


def test_resume_runs_only_the_remaining_batches(runs):
    # 5 of 20 batches ran before the checkpoint; the rest ran after resuming
    assert _summary(runs / "mid_epoch")["train_batches"] == MAX_STEPS - 5
    # the last batch of epoch 0 had trained; only its validation was left
    assert _summary(runs / "last_batch_validation_pending")["train_batches"] == MAX_STEPS - 7
    # accumulate_grad_batches=2: 4 optimizer steps = the 7 batches of epoch 0; 10 steps = 7 + 7 + 4 batches
    assert _summary(runs / "accumulate_last_batch")["train_batches"] == 18 - 7
