"""DDP features in a real 2-process job (strategy="ddp", gloo on CPU): `helpers/ddp_features_script.py` runs
every scenario once and each rank reports what it saw. Expected values come from a single-process PyTorch
loop over the same global batches, or from the rule each feature states (torch's post-local SGD schedule).
"""

import json
import os
import sys

import pytest
import torch
from torch.nn import functional as F

from helpers.ddp_modules import IndexedDataset, make_batchnorm_net, rank_shards, reference_fit, run_in_session

pytestmark = pytest.mark.distributed

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers",
                      "ddp_features_script.py")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp_features")
    returncode, _, stderr = run_in_session([sys.executable, SCRIPT, str(out_dir)], 180)
    assert returncode == 0, stderr[-4000:]
    return out_dir


def reports(out_dir, scenario):
    return [json.loads((out_dir / f"{scenario}_rank{rank}.json").read_text()) for rank in range(2)]


def as_tensors(state):
    return {key: torch.tensor(value) for key, value in state.items()}


def batchnorm_reference(max_epochs=2, batch_size=4):
    """One process, BatchNorm over both ranks' batches together, the loss the mean of the ranks' losses."""
    dataset = IndexedDataset()
    net = make_batchnorm_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in range(max_epochs):
        shards = rank_shards(len(dataset), epoch)
        for start in range(0, len(shards[0]), batch_size):
            parts = [shard[start:start + batch_size] for shard in shards]
            out = net(dataset.x[parts[0] + parts[1]])
            targets = dataset.y[parts[0] + parts[1]]
            loss = (F.mse_loss(out[:batch_size], targets[:batch_size])
                    + F.mse_loss(out[batch_size:], targets[batch_size:])) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {f"net.{key}": value for key, value in net.state_dict().items()}


def test_sync_batchnorm_matches_one_process_over_the_global_batch(job):
    expected = batchnorm_reference()
    for report in reports(job, "sync_bn"):
        # Converted for the fit (CPU: fulmen's gloo-capable layer; torch's SyncBatchNorm is GPU-only), then back.
        assert report["classes"] == {"during_fit": "CPUSyncBatchNorm", "after_fit": "BatchNorm1d"}
        state = as_tensors(report["state"])
        assert state.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(state[key], value.to(state[key].dtype), atol=1e-5, rtol=1e-4, msg=key)


def test_comm_hook_with_wrapper_runs_and_gradients_stay_averaged(job):
    expected = reference_fit(max_epochs=2)
    for report in reports(job, "comm_hook"):
        assert report["hook_calls"] == 8  # one bucket, 8 optimizer steps
        for key, value in expected.items():
            torch.testing.assert_close(torch.tensor(report["state"][key]), value, atol=1e-6, rtol=0)


def test_post_local_sgd_averages_parameters_every_period_after_the_warm_up(job):
    # start_localSGD_iter=2: steps 0 and 1 all-reduce gradients; afterwards each rank steps alone (subgroups of
    # one) and the model averager makes the ranks equal again at steps 2, 4, 6 (period 2).
    for report in reports(job, "averaging"):
        assert report["same_weights"] == [True, True, True, False, True, False, True, False]


def test_rank_zero_only_values_are_not_synced(job):
    rank0, rank1 = reports(job, "rank_zero_only")
    assert rank0["metrics"]["rank0_loss"] == pytest.approx(rank0["local_mean"], rel=1e-5)
    assert "rank0_loss" not in rank1["metrics"]


def test_every_rank_uses_the_logger_version_rank_zero_created(job):
    rank0, rank1 = reports(job, "versions")
    assert rank0 == rank1
    assert rank0["version"] == 0 and rank0["log_dir"].endswith(os.path.join("lightning_logs", "version_0"))
    assert sorted(os.listdir(job / "logs" / "lightning_logs")) == ["version_0"]


def test_ckpt_path_last_is_the_file_rank_zero_chose(job):
    for report in reports(job, "last"):
        assert report["ckpt_path"] == report["newer"]
