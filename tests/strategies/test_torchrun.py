"""Processes started by torchrun: fulmen reads ranks from the environment and launches nothing itself."""

import json
import subprocess
import sys

import pytest
import torch

from helpers.ddp_modules import SCRIPT, free_port, kill_session, load_reports, reference_fit, report_weights, script_env

pytestmark = pytest.mark.distributed

TIMEOUT = 60


def torchrun(out_dir, port, *, nnodes, nproc_per_node, node_rank, devices, num_nodes):
    command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
               f"--nproc_per_node={nproc_per_node}", f"--node_rank={node_rank}", "--master_addr=127.0.0.1",
               f"--master_port={port}", SCRIPT, str(out_dir), "torchrun", "--devices", str(devices),
               "--num-nodes", str(num_nodes)]
    return subprocess.Popen(command, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(procs):
    """Wait for every torchrun; whatever is left of their sessions (agents, workers) is killed afterwards."""
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT))
    finally:
        for proc in procs:
            kill_session(proc)
    for proc, (_, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-4000:]


def extras(out_dir):
    return [json.loads((out_dir / f"extra_torchrun_rank{rank}.json").read_text()) for rank in range(2)]


def check_training(out_dir):
    reports = load_reports(out_dir, "torchrun")
    expected = reference_fit(max_epochs=2)
    weights = [report_weights(report) for report in reports]
    for name, value in expected.items():
        assert torch.equal(weights[0][name], weights[1][name])
        torch.testing.assert_close(weights[0][name], value, atol=1e-6, rtol=0)
    for report in reports:
        assert report["collectives"]["broadcast_from_1"]["sender"] == 1
        assert report["collectives"]["scalar"] == [0.0, 1.0]
    return reports


def test_two_nodes_with_one_process_each(tmp_path):
    port = free_port()
    procs = [torchrun(tmp_path, port, nnodes=2, nproc_per_node=1, node_rank=node, devices=1, num_nodes=2)
             for node in range(2)]
    finish(procs)
    reports = check_training(tmp_path)
    for rank, report in enumerate(reports):
        assert report["global_rank"] == rank and report["node_rank"] == rank and report["local_rank"] == 0
        assert report["world_size"] == 2 and report["num_nodes"] == 2 and report["num_devices"] == 1
        assert report["is_global_zero"] is (rank == 0)
    assert [report["prepare_data_calls"] for report in reports] == [1, 1]  # once per node
    for node, extra in enumerate(extras(tmp_path)):
        assert extra["environment"] == "TorchElasticEnvironment"
        assert extra["child_pids"] == []
        assert extra["parent_pid"] == procs[node].pid  # the worker is torchrun's child, not a fulmen re-launch


def test_one_node_with_two_processes(tmp_path):
    proc = torchrun(tmp_path, free_port(), nnodes=1, nproc_per_node=2, node_rank=0, devices=2, num_nodes=1)
    finish([proc])
    reports = check_training(tmp_path)
    for rank, report in enumerate(reports):
        assert report["global_rank"] == rank and report["local_rank"] == rank and report["node_rank"] == 0
        assert report["world_size"] == 2 and report["num_nodes"] == 1 and report["num_devices"] == 2
    assert [report["prepare_data_calls"] for report in reports] == [1, 0]
    for extra in extras(tmp_path):
        assert extra["environment"] == "TorchElasticEnvironment"
        assert extra["child_pids"] == []
        assert extra["parent_pid"] == proc.pid
