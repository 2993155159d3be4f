"""strategy="ddp" end to end: `helpers/ddp_script.py` runs in a subprocess, re-launches itself for rank 1,
and each rank reports what it saw as JSON. Expected values were checked against Lightning 2.6.6 running the
same script (gloo on CPU, 2 processes) and against a single-process PyTorch loop over the same global batches.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch

from helpers.ddp_modules import (
    NUM_SAMPLES,
    kill_session,
    load_reports,
    rank_shards,
    reference_fit,
    report_weights,
    run_in_session,
    script_command,
    script_env,
)

pytestmark = pytest.mark.distributed

TIMEOUT = 60


def run_script(out_dir, *args, timeout=TIMEOUT):
    """Run the script to the end in its own session; whatever it leaves running is killed afterwards."""
    return run_in_session(script_command(out_dir, *args), timeout)


def is_alive(pid):
    """True while `pid` runs; a zombie (finished, not yet reaped) counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_ended(pids, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(is_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if is_alive(pid)]


def read_pids(out_dir, tag):
    return [int((out_dir / f"{tag}_pid_rank{rank}").read_text()) for rank in range(2)]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One 2-process job with several trainers (see `run_full` in the script); the tests below read its reports."""
    out_dir = tmp_path_factory.mktemp("ddp_full")
    returncode, _, stderr = run_script(out_dir, "full")
    assert returncode == 0, stderr[-4000:]
    return out_dir


def _extra(out_dir):
    return [json.loads((out_dir / f"extra_full_rank{rank}.json").read_text()) for rank in range(2)]


# -- training matches one process over the global batch ------------------------------------------------


def test_weights_identical_on_ranks_and_equal_to_single_process_reference(full_run):
    ranks = [report_weights(report) for report in load_reports(full_run, "main")]
    expected = reference_fit(max_epochs=2)
    for name, value in expected.items():
        assert torch.equal(ranks[0][name], ranks[1][name])
        torch.testing.assert_close(ranks[0][name], value, atol=1e-6, rtol=0)
    assert not torch.allclose(ranks[0]["layer.weight"], reference_fit(max_epochs=2, world_size=1)["layer.weight"])


def test_accumulate_grad_batches_matches_reference_and_syncs_only_when_stepping(full_run):
    reports = load_reports(full_run, "accumulate")
    ranks = [report_weights(report) for report in reports]
    expected = reference_fit(max_epochs=2, accumulate_grad_batches=2)
    for name, value in expected.items():
        assert torch.equal(ranks[0][name], ranks[1][name])
        torch.testing.assert_close(ranks[0][name], value, atol=1e-6, rtol=0)
    # Gradients seen in on_after_backward: each rank's own on accumulating batches (no_sync), averaged on stepping ones.
    grads = [report["grad_sums"] for report in reports]
    assert len(grads[0]) == 8
    for batch, (rank0, rank1) in enumerate(zip(*grads)):
        if batch % 2 == 0:
            assert rank0 != rank1
        else:
            assert rank0 == rank1


def test_gradients_are_averaged_every_step_without_accumulation(full_run):
    rank0, rank1 = (report["grad_sums"] for report in load_reports(full_run, "main"))
    assert len(rank0) == 8 and rank0 == rank1


def test_rank_one_is_the_script_relaunched_by_rank_zero(full_run):
    rank0, rank1 = load_reports(full_run, "main")
    assert rank1["parent_pid"] == rank0["pid"]
    assert _extra(full_run)[0]["launcher"] == "SubprocessScriptLauncher"


# -- metrics ------------------------------------------------------------------------------------------------


def test_sync_dist_epoch_metric_is_the_mean_of_rank_means(full_run):
    reports = load_reports(full_run, "main")
    rank_means = [sum(report["train_losses"]["1"]) / len(report["train_losses"]["1"]) for report in reports]
    assert abs(rank_means[0] - rank_means[1]) > 0.05
    synced = [report["callback_metrics"]["loss_sync"] for report in reports]
    assert synced[0] == synced[1]
    assert synced[0] == pytest.approx(sum(rank_means) / 2, rel=1e-6)


def test_metric_without_sync_dist_keeps_each_ranks_own_value(full_run):
    for report in load_reports(full_run, "main"):
        losses = report["train_losses"]["1"]
        assert report["callback_metrics"]["loss_local"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)


# -- data -----------------------------------------------------------------------------------------------------


def test_each_rank_sees_a_disjoint_shuffled_shard_that_changes_every_epoch(full_run):
    # The user's loader does not shuffle; a DistributedSampler(shuffle=True, seed=0) replaces its sampler.
    reports = load_reports(full_run, "main")
    for epoch in range(2):
        seen = [report["train_indices"][str(epoch)] for report in reports]
        assert seen == rank_shards(NUM_SAMPLES, epoch)
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == list(range(NUM_SAMPLES))
        assert seen[0] != sorted(seen[0])
    assert reports[0]["train_indices"]["0"] != reports[0]["train_indices"]["1"]


def test_custom_sampler_is_split_between_ranks_and_gets_set_epoch(full_run):
    reports = load_reports(full_run, "custom_sampler")
    reversed_order = list(range(NUM_SAMPLES - 1, -1, -1))
    for epoch in range(2):
        seen = [report["train_indices"][str(epoch)] for report in reports]
        expected = [[reversed_order[position] for position in shard] for shard in rank_shards(NUM_SAMPLES, epoch)]
        assert seen == expected
        assert sorted(seen[0] + seen[1]) == list(range(NUM_SAMPLES))
    assert [extra["wrapped_sampler_epochs"] for extra in _extra(full_run)] == [[0, 1], [0, 1]]


def test_use_distributed_sampler_false_keeps_the_users_sampler(full_run):
    reversed_order = list(range(NUM_SAMPLES - 1, -1, -1))
    for report in load_reports(full_run, "own_sampler"):
        assert report["train_indices"] == {"0": reversed_order, "1": reversed_order}
    assert [extra["kept_sampler_epochs"] for extra in _extra(full_run)] == [[0, 1], [0, 1]]


def test_validation_pads_the_shorter_shard(full_run):
    # 7 samples on 2 ranks: rank 1 gets sample 0 again, and a synced sum counts the padding.
    reports = load_reports(full_run, "main", stage="validate")
    assert [report["val_indices"] for report in reports] == [[0, 2, 4, 6], [1, 3, 5, 0]]
    assert [report["callback_metrics"]["val_count"] for report in reports] == [8.0, 8.0]


def test_predict_splits_without_repeats(full_run):
    reports = load_reports(full_run, "main", stage="predict")
    assert [report["predict_indices"] for report in reports] == [[0, 2, 4], [1, 3]]
    assert [extra["predictions"] for extra in _extra(full_run)] == [[[0, 2], [4]], [[1, 3]]]


# -- who does what --------------------------------------------------------------------------------------------


def test_rank_properties_on_each_rank(full_run):
    for rank, report in enumerate(load_reports(full_run, "main")):
        assert report["world_size"] == 2 and report["num_devices"] == 2 and report["num_nodes"] == 1
        assert report["global_rank"] == rank and report["local_rank"] == rank and report["node_rank"] == 0
        assert report["is_global_zero"] is (rank == 0)
        assert report["module_ranks"] == [rank, rank]


def test_prepare_data_runs_on_local_rank_zero_and_setup_on_every_rank(full_run):
    reports = load_reports(full_run, "main")
    assert [report["prepare_data_calls"] for report in reports] == [1, 0]
    assert [report["setup_calls"] for report in reports] == [1, 1]


def test_collectives_all_gather_broadcast_and_reduce(full_run):
    for report in load_reports(full_run, "main"):
        result = report["collectives"]
        assert result["scalar_shape"] == [2] and result["scalar"] == [0.0, 1.0]
        assert result["nested_a_shape"] == [2] and result["nested_a"] == [0, 1]
        assert result["nested_c_shape"] == [2, 3] and result["nested_c"] == [[0, 0, 0], [1, 1, 1]]
        assert result["broadcast_from_1"] == {"sender": 1, "text": "hello from 1"}
        assert result["reduce_default"] == 1.5
        assert result["reduce_sum"] == 3.0


def test_only_rank_zero_writes_logs_and_checkpoints(full_run):
    logs = full_run / "root" / "lightning_logs"
    assert sorted(os.listdir(logs)) == ["version_0"]
    assert sorted(os.listdir(logs / "version_0" / "checkpoints")) == ["epoch=1-step=8.ckpt"]
    markers = sorted(name for name in os.listdir(full_run) if name.startswith("saved_by_rank"))
    assert markers == ["saved_by_rank0_epoch=0-step=4.ckpt", "saved_by_rank0_epoch=1-step=8.ckpt"]
    rows = (logs / "version_0" / "metrics.csv").read_text().strip().splitlines()
    epochs = [row.split(",")[0] for row in rows[1:]]
    assert epochs == ["0", "1", "2"]  # two training epochs, then validate; each row once


def test_progress_bar_draws_on_rank_zero_only(full_run):
    rank0 = (full_run / "stdout_local0.txt").read_text()
    rank1 = (full_run / "stdout_local1.txt").read_text()
    assert "Epoch 1" in rank0
    assert "Epoch" not in rank1 and "it/s" not in rank1
    assert [report["progress_bar_enabled"] for report in load_reports(full_run, "custom_sampler")] == [True, False]


def test_early_stopping_and_checkpoint_decisions_agree_across_ranks(full_run):
    # `score` improves on rank 0 only: rank 1 alone would stop after epoch 1, rank 0 would save epoch 1.
    extras = _extra(full_run)
    assert [extra["stopped_epoch"] for extra in extras] == [1, 1]
    assert [extra["stop_current_epoch"] for extra in extras] == [2, 2]
    assert extras[0]["best_model_path"] == extras[1]["best_model_path"]
    assert os.path.basename(extras[0]["best_model_path"]) == "epoch=0-step=4.ckpt"
    assert sorted(os.listdir(full_run / "es_checkpoints")) == ["epoch=0-step=4.ckpt"]
    assert [report["global_step"] for report in load_reports(full_run, "earlystop")] == [8, 8]


def test_checkpoint_names_are_chosen_by_rank_zero(tmp_path):
    # Rank 1 sees `epoch=0-step=4.ckpt` and `last.ckpt` as taken, rank 0 does not: all ranks use rank 0's names.
    returncode, _, stderr = run_script(tmp_path, "names")
    assert returncode == 0, stderr[-3000:]
    directory = tmp_path / "names_checkpoints"
    extras = [json.loads((tmp_path / f"extra_names_rank{rank}.json").read_text()) for rank in range(2)]
    assert extras[0] == extras[1]
    assert extras[0]["best_model_path"] == str(directory / "epoch=0-step=4.ckpt")
    assert extras[0]["last_model_path"] == str(directory / "last.ckpt")
    assert sorted(os.listdir(directory)) == ["epoch=0-step=4.ckpt", "last.ckpt"]


def test_progress_bar_and_checkpointing_with_sync_dist_finish(tmp_path):
    returncode, _, stderr = run_script(tmp_path, "progress_sync")
    assert returncode == 0, stderr[-3000:]
    synced = [report["callback_metrics"]["loss_sync"] for report in load_reports(tmp_path, "progress_sync")]
    assert synced[0] == synced[1]


# -- faults ---------------------------------------------------------------------------------------------------


def test_failure_on_rank_one_ends_the_whole_job(tmp_path):
    returncode, _, stderr = run_script(tmp_path, "fail", "--fail-rank", 1)
    assert returncode != 0
    assert "probe failure on rank 1 at step 3" in stderr
    # Either torch's "[rank1]:" traceback prefix or fulmen's watchdog line names the failing process.
    assert re.search(r"\[rank1\]:.*probe failure|local rank 1", stderr)
    assert wait_until_ended(read_pids(tmp_path, "fail")) == []


def test_failure_on_rank_zero_ends_the_children(tmp_path):
    returncode, _, stderr = run_script(tmp_path, "fail", "--fail-rank", 0)
    assert returncode != 0
    assert "probe failure on rank 0 at step 3" in stderr
    assert wait_until_ended(read_pids(tmp_path, "fail")) == []


def test_sigterm_to_the_launching_process_ends_the_children(tmp_path):
    proc = subprocess.Popen(script_command(tmp_path, "sigterm"), env=script_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not all((tmp_path / f"sigterm_pid_rank{rank}").exists() for rank in range(2)):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the job never started training"
            time.sleep(0.1)
        pids = read_pids(tmp_path, "sigterm")
        assert pids[0] == proc.pid
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        assert wait_until_ended(pids) == []
    finally:
        kill_session(proc)
        proc.stderr.close()
