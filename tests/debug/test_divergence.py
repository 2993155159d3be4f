"""The DDP divergence detector: ranks that stop making the same collectives end, every one of them, with a report
naming the diverging rank, each rank's call site and step, instead of hanging or dying of transport errors.

Each case runs `helpers/ddp_divergence.py` in its own session (strategy="ddp" re-launches it per rank;
"ddp_spawn" spawns the ranks; torchrun starts them) and checks exit codes and the text on stderr.
"""

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from helpers.ddp_modules import free_port, run_in_session, script_env

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers", "ddp_divergence.py")
TIMEOUT = 240  # the whole job, start-up included, on a loaded machine; a hang would take 30 minutes


def line_of(text):
    """The helper's line number holding `text` (the report names call sites by file and line)."""
    with open(HELPER) as handle:
        return next(number for number, line in enumerate(handle, start=1) if text in line)


EXTRA, LOSS, RAISE = line_of('self.log("extra"'), line_of('self.log("loss"'), line_of("raise RuntimeError")


def run(*args, launcher=None):
    command = [sys.executable, HELPER, *map(str, args)]
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={args[2]}",
                   "--master_addr=127.0.0.1", f"--master_port={free_port()}", HELPER, *map(str, args)]
    returncode, _, stderr = run_in_session(command, TIMEOUT)
    return returncode, stderr


def report_of(stderr):
    """The divergence report (between its rulers), without the per-rank prefixes torch adds."""
    ruler = "=" * 100
    assert stderr.count(ruler) == 2, stderr[-6000:]
    return stderr.split(ruler)[1]


def rank_block(report, rank):
    block = report.split(f"  rank {rank} (")[1]
    return block.split("\n  rank ")[0]


pytestmark = pytest.mark.distributed


def test_a_rank_that_skips_a_synced_log_is_named_with_both_call_sites_and_the_step():
    code, stderr = run("skip_log", "ddp", 2, 5)
    assert code == 3, stderr[-4000:]
    report = report_of(stderr)
    assert "diverged at collective #6: they called different collectives" in report
    assert "Diverging: rank 1 (at its step 2)" in report
    site = "at #6: collective #6 reduce at ddp_divergence.py:{} in Astray.training_step (step 2"
    assert site.format(EXTRA) in rank_block(report, 0)
    assert 'self.log("extra", loss.detach(), sync_dist=True)' in rank_block(report, 0)
    assert site.format(LOSS) in rank_block(report, 1)
    assert 'self.log("loss", loss.detach(), sync_dist=True)' in rank_block(report, 1).split("last agreed")[0]
    assert "fulmen: rank 1 stops: the DDP ranks diverged (report printed by rank 0)" in stderr
    assert "Connection closed" not in stderr and "Connection reset" not in stderr


def test_three_spawned_ranks_name_the_one_that_skipped():
    code, stderr = run("skip_log", "ddp_spawn", 3, 5)
    assert code == 1, stderr[-4000:]  # the launching process raises DivergenceError
    report = report_of(stderr)
    assert "Diverging: rank 2 (at its step 2)." in report
    for rank in (0, 1):
        assert 'self.log("extra", loss.detach(), sync_dist=True)' in rank_block(report, rank)
    assert f"ddp_divergence.py:{LOSS} in Astray.training_step (step 2" in rank_block(report, 2).split("last agreed")[0]
    assert stderr.rstrip().splitlines()[-1].startswith("fulmen.debug.divergence.DivergenceError: The processes of "
                                                       "this run diverged")


def test_a_rank_with_one_batch_fewer_is_named_where_it_ended_its_run():
    code, stderr = run("fewer_batch", "ddp", 2, 5)
    assert code == 3, stderr[-4000:]
    report = report_of(stderr)
    assert "Diverging: rank 1 (at its step 3)" in report
    assert 'self.log("extra", loss.detach(), sync_dist=True)' in rank_block(report, 0)
    assert "(step 3, epoch 0, train)" in rank_block(report, 0)
    assert "end of run at fulmen/trainer/trainer.py" in rank_block(report, 1)


def test_a_raising_rank_and_its_error_are_the_last_lines():
    code, stderr = run("raise", "ddp", 2, 5)
    assert code == 1, stderr[-4000:]
    last = stderr.rstrip().splitlines()[-4:]
    assert last[0] == "fulmen: rank 1 raised at step 2 (epoch 0, train); every process of this job stops."
    assert last[1].strip() == f"ddp_divergence.py:{RAISE} in training_step"
    assert last[-1] == "RuntimeError: boom: a bug on one rank"
    assert "Connection closed" not in stderr and "Connection reset" not in stderr


def test_a_raising_spawned_rank_is_what_the_launching_process_raises():
    code, stderr = run("raise", "ddp_spawn", 3, 5)
    assert code == 1, stderr[-4000:]
    assert stderr.rstrip().splitlines()[-1] == "RuntimeError: boom: a bug on one rank"
    assert "-- Process 2 terminated with the following error" in stderr
    assert "Connection closed" not in stderr and "Connection reset" not in stderr


def test_torchrun_launched_ranks_all_stop_with_the_report():
    code, stderr = run("skip_log", "ddp", 2, 5, launcher="torchrun")
    assert code != 0
    report = report_of(stderr.replace("[default0]:", "").replace("[default1]:", ""))
    assert "Diverging: rank 1 (at its step 2)" in report
    assert "exitcode  : 3" in stderr


def test_a_slow_rank_is_waited_for_with_one_warning_not_killed():
    code, stderr = run("slow", "ddp", 2, 1)
    assert code == 0, stderr[-4000:]
    assert "fulmen: rank 0 has waited" in stderr and "for rank 1" in stderr and "so fulmen keeps waiting" in stderr
    assert "diverged" not in stderr


def test_ranks_that_agree_finish_normally_with_the_detector_on():
    code, stderr = run("none", "ddp", 2, 5)
    assert code == 0, stderr[-4000:]
    assert "diverged" not in stderr


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "30"])
def test_a_bad_divergence_timeout_is_refused_with_the_fix(value):
    from fulmen.strategies import DDPStrategy

    with pytest.raises(ValueError, match=r"divergence_timeout.*seconds.*or 0 to turn the divergence detector off"):
        DDPStrategy(divergence_timeout=value)


def test_the_timeout_comes_from_the_argument_the_environment_or_the_default(monkeypatch):
    from fulmen.debug.divergence import DEFAULT_TIMEOUT, resolve_timeout

    monkeypatch.delenv("FULMEN_DIVERGENCE_TIMEOUT", raising=False)
    assert resolve_timeout(None) == DEFAULT_TIMEOUT < 60
    assert resolve_timeout(timedelta(seconds=12)) == 12.0
    assert resolve_timeout(0) is None  # off
    monkeypatch.setenv("FULMEN_DIVERGENCE_TIMEOUT", "7.5")
    assert resolve_timeout(None) == 7.5
    assert resolve_timeout(3) == 3.0  # the argument wins
    monkeypatch.setenv("FULMEN_DIVERGENCE_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="FULMEN_DIVERGENCE_TIMEOUT='soon' is not a number"):
        resolve_timeout(None)


def test_a_single_process_run_never_loads_the_detector(tmp_path):
    code = ("import sys, torch\nimport fulmen as L\nfrom fulmen.demos import BoringModel\n"
            f"L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, "
            f"enable_model_summary=False, default_root_dir={str(tmp_path)!r}).fit(BoringModel())\n"
            "assert 'fulmen.debug.divergence' not in sys.modules, 'loaded'\nprint('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], env=script_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
