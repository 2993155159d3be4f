"""FSDPStrategy checkpoints in real gloo jobs: `state_dict_type="full"` (one file from rank 0, loadable in a plain
single process) and "sharded" (a `torch.distributed.checkpoint` directory, atomic, resumable on 2 and on 1
process, convertible with `python -m fulmen convert-checkpoint`). The reference is a single-process loop."""

import subprocess
import sys

import pytest
import torch

import fulmen as L
from helpers.ddp_modules import script_env
from helpers.fsdp_modules import (
    FSDPNet,
    assert_state_close,
    reference_fit,
    result,
    run_script,
    single_process_loader,
)

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fsdp_checkpoint")
    run_script(out_dir, "checkpoint")
    return out_dir


@pytest.mark.parametrize("kind", ["full", "sharded"])
def test_save_and_resume_on_two_ranks(job, kind):
    after_one, _ = reference_fit(max_epochs=1)
    after_two, _ = reference_fit(max_epochs=2)
    assert_state_close(result(job, f"saved_{kind}")["state"], after_one)
    assert_state_close(result(job, f"resumed_{kind}")["state"], after_two)


def test_sharded_checkpoint_is_a_dcp_directory(job):
    path = job / "sharded.ckpt"
    assert path.is_dir()
    names = sorted(p.name for p in path.iterdir())
    assert ".metadata" in names and "meta.pt" in names
    assert len([n for n in names if n.endswith(".distcp")]) == 2  # each rank wrote its own shard


def test_full_checkpoint_loads_in_a_single_process(job, tmp_path):
    after_one, optimizer_after_one = reference_fit(max_epochs=1)
    path = job / "full.ckpt"
    model = FSDPNet.load_from_checkpoint(path)
    assert_state_close(model.state_dict(), after_one)
    # The optimizer state is in torch's plain layout (parameter indices), so a plain run resumes from it.
    saved = torch.load(path, weights_only=True)["optimizer_states"][0]
    assert saved["param_groups"][0]["params"] == optimizer_after_one["param_groups"][0]["params"]
    for index, state in optimizer_after_one["state"].items():
        torch.testing.assert_close(saved["state"][index]["momentum_buffer"], state["momentum_buffer"], atol=1e-5,
                                   rtol=1e-4)
    resumed = FSDPNet()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(resumed, single_process_loader(), ckpt_path=path)
    after_two, _ = reference_fit(max_epochs=2)
    assert_state_close(resumed.state_dict(), after_two)


def test_a_failed_sharded_save_keeps_the_previous_checkpoint(job):
    failed = torch.load(job / "failed_save.pt")
    assert failed["error"].startswith("RuntimeError: Saving the sharded checkpoint")
    assert "rank 1: OSError: disk full (simulated)" in failed["error"]
    assert "previous checkpoint there is kept" in failed["error"]
    assert failed["leftovers"] == []  # the half-written temporary directory is removed


def test_sharded_checkpoint_resumes_on_one_process(job):
    # The directory still holds the epoch-1 save (the later save failed); DCP reshards it for one rank.
    run_script(job, "resume1", "--devices", "1")
    after_two, _ = reference_fit(max_epochs=2)
    assert_state_close(result(job, "resumed_sharded_on_1")["state"], after_two)


def test_resume_on_the_same_world_size_is_bitwise(job):
    uninterrupted = result(job, "uninterrupted")["state"]  # the same strategy, 2 epochs in one fit
    resumed = result(job, "resumed_sharded")["state"]
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_convert_checkpoint_command(job, tmp_path):
    out = tmp_path / "converted.ckpt"
    command = [sys.executable, "-m", "fulmen", "convert-checkpoint", str(job / "sharded.ckpt"), str(out)]
    completed = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert f"wrote {out}" in completed.stdout
    after_one, optimizer_after_one = reference_fit(max_epochs=1)
    assert_state_close(FSDPNet.load_from_checkpoint(out).state_dict(), after_one)
    saved = torch.load(out, weights_only=True)["optimizer_states"][0]
    for index, state in optimizer_after_one["state"].items():
        torch.testing.assert_close(saved["state"][index]["momentum_buffer"], state["momentum_buffer"], atol=1e-5,
                                   rtol=1e-4)


def test_convert_checkpoint_refuses_other_paths(tmp_path):
    command = [sys.executable, "-m", "fulmen", "convert-checkpoint", str(tmp_path), str(tmp_path / "x.ckpt")]
    completed = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "is not a sharded checkpoint directory" in completed.stderr


def test_model_checkpoint_keeps_top_k_sharded_directories(job):
    top_k = torch.load(job / "top_k.pt")
    assert top_k["files"] == ["epoch=2-step=12.ckpt", "last.ckpt"]  # older directories removed through the strategy
    assert top_k["best"] == "epoch=2-step=12.ckpt" and top_k["last_is_link"]


def test_sigterm_saves_a_sharded_checkpoint_that_resumes_exactly(tmp_path):
    run_script(tmp_path, "sigterm", returncode=143)  # 128 + SIGTERM, after saving
    checkpoint = tmp_path / "checkpoints" / "signal-interrupted.ckpt"
    assert (checkpoint / ".metadata").is_file() and (checkpoint / "meta.pt").is_file()
    assert torch.load(checkpoint / "meta.pt")["global_step"] == 10  # mid-epoch 3 (4 steps an epoch)
    run_script(tmp_path, "resume_sigterm")
    uninterrupted = result(tmp_path, "uninterrupted_4")["state"]
    resumed = result(tmp_path, "resumed_sigterm")["state"]
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
