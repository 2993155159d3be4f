"""SLURM auto-requeue as Lightning 2.6.6 does it: on the requeue signal save `hpc_ckpt_<n>.ckpt` in
`default_root_dir` and run `scontrol requeue <job id>` on rank 0; the requeued job's plain `fit()` resumes from
the newest hpc checkpoint. A fake `scontrol` on PATH records its arguments; the script signals itself."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fulmen.strategies.cluster_environments import find_free_port
from fulmen.strategies.slurm_requeue import hpc_resume_path, hpc_save_path, slurm_job_id

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
SRC = Path(__file__).resolve().parents[2] / "src"


def _env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.txt"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "TORCHELASTIC"))}
    env.pop("LOCAL_RANK", None)
    env.pop("WORLD_SIZE", None)
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=f"{SRC}{os.pathsep}{HELPERS}",
               SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_ID="4242",
               SLURM_JOB_NAME="train", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_port()))
    return env


def _run(tmp_path, phase):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, str(HELPERS / "slurm_requeue_script.py"), str(root), phase],
                            env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((root / f"{phase}.json").read_text()), root


def test_requeue_signal_saves_an_hpc_checkpoint_requeues_and_the_next_fit_resumes_from_it(tmp_path):
    first, root = _run(tmp_path, "first")
    assert first == {"global_step": 3, "ckpt_path": None}
    assert sorted(os.listdir(root)) == ["first.json", "hpc_ckpt_1.ckpt"]
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"]
    resumed, _ = _run(tmp_path, "resume")
    assert resumed == {"global_step": 3, "ckpt_path": str(root / "hpc_ckpt_1.ckpt")}


def test_hpc_checkpoint_names(tmp_path):
    assert hpc_resume_path(tmp_path) is None
    assert hpc_save_path(tmp_path) == str(tmp_path / "hpc_ckpt_1.ckpt")
    for name in ("hpc_ckpt_2.ckpt", "hpc_ckpt_10.ckpt", "hpc_ckpt_x.ckpt", "other.ckpt"):
        (tmp_path / name).touch()
    assert hpc_save_path(tmp_path) == str(tmp_path / "hpc_ckpt_11.ckpt")
    assert hpc_resume_path(tmp_path) == str(tmp_path / "hpc_ckpt_10.ckpt")


def test_array_jobs_requeue_their_task(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "99")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "99_3"
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert slurm_job_id() == "100"
    monkeypatch.setenv("SLURM_JOB_ID", "1;rm")
    with pytest.raises(ValueError, match="not a number"):
        slurm_job_id()


def _no_slurm(monkeypatch):
    for key in [key for key in os.environ if key.startswith("SLURM_")] + ["LOCAL_RANK", "WORLD_SIZE"]:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("auto_requeue", [True, False])
def test_outside_slurm_the_environment_runs_on_one_device_with_the_handler_only_during_fit(tmp_path, monkeypatch,
                                                                                           auto_requeue):
    import signal

    import fulmen as L
    from fulmen.plugins.environments import SLURMEnvironment
    from fulmen.strategies import SingleDeviceStrategy
    from helpers.tiny import TinyModule, make_loader, quiet_trainer

    _no_slurm(monkeypatch)
    seen = []

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(getattr(signal.getsignal(signal.SIGUSR2), "__self__", None).__class__.__name__)

    before = signal.getsignal(signal.SIGUSR2)
    trainer = quiet_trainer(tmp_path, plugins=[SLURMEnvironment(auto_requeue, signal.SIGUSR2)], max_steps=1,
                            callbacks=[Probe()])
    assert isinstance(trainer.strategy, SingleDeviceStrategy)  # as Lightning: no SLURM job, one device
    trainer.fit(TinyModule(), make_loader(16))
    assert seen == (["SLURMRequeue"] if auto_requeue else ["NoneType"])
    assert signal.getsignal(signal.SIGUSR2) == before
