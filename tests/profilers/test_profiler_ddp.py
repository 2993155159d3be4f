"""Profilers under DDP: every rank profiles its own run and writes its own report, named by local rank
(`{stage}-{filename}-{local_rank}.txt`, as Lightning 2.6.6 names them; checked with ddp_spawn, 2 CPU processes)."""


import pytest

import fulmen as L
from fulmen.profilers import AdvancedProfiler, SimpleProfiler
from helpers.ddp_modules import DDPProbe, make_loader

pytestmark = pytest.mark.distributed


@pytest.fixture(autouse=True)
def _launch(spawn_env, spawn_time_limit):
    """A clean launch environment (removed again afterwards) and a time limit for every test here."""


def _fit(tmp_path, profiler):
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, default_root_dir=tmp_path,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, profiler=profiler)
    trainer.fit(DDPProbe(str(tmp_path), "prof", log_sync=False), make_loader())


def test_each_rank_writes_its_simple_report_named_by_rank(tmp_path):
    _fit(tmp_path, SimpleProfiler(dirpath=tmp_path / "prof", filename="perf"))
    assert sorted(path.name for path in (tmp_path / "prof").iterdir()) == ["fit-perf-0.txt", "fit-perf-1.txt"]
    for rank in (0, 1):
        rows = {line.split("\t")[0].strip("| "): line for line in
                (tmp_path / "prof" / f"fit-perf-{rank}.txt").read_text().splitlines() if line.startswith("|")}
        # 32 samples, batches of 4, split over 2 ranks: 4 training steps on each.
        assert rows["[Strategy]DDPStrategy.training_step"].split("|")[3].strip() == "4"
        assert rows["run_training_batch"].split("|")[3].strip() == "4"


def test_advanced_report_headers_name_the_rank(tmp_path):
    _fit(tmp_path, AdvancedProfiler(dirpath=tmp_path / "prof", filename="adv"))
    for rank in (0, 1):
        report = (tmp_path / "prof" / f"fit-adv-{rank}.txt").read_text()
        assert f"Profile stats for: run_training_batch rank: {rank}" in report
