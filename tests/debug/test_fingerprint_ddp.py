"""Run fingerprints with 2 gloo ranks (ddp_spawn): each rank writes its own file in the directory rank 0 chose, and
`python -m fulmen diff` compares every rank."""

import pytest

import fulmen as L
from fulmen.__main__ import main as cli
from fulmen.debug import read_fingerprints
from helpers.ddp_modules import DDPProbe, make_loader

pytestmark = pytest.mark.distributed


@pytest.fixture(autouse=True)
def _launch(spawn_env, spawn_time_limit):
    """A clean launch environment (removed again afterwards) and a time limit for every test here."""


def test_each_rank_writes_its_own_file_and_diff_compares_them_all(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")  # what seed_everything(3) sets; the spawned ranks seed from it
    for run in ("a", "b"):
        L.seed_everything(3, verbose=False)
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2,
                            fingerprint=tmp_path / run, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(DDPProbe(log_sync=False), make_loader())
    rank0 = read_fingerprints(tmp_path / "a" / "fingerprints.bin")
    rank1 = read_fingerprints(tmp_path / "a" / "fingerprints.rank1.bin")
    assert [(s["rank"], s["world_size"]) for s in (rank0.sessions[0], rank1.sessions[0])] == [(0, 2), (1, 2)]
    assert [row["step"] for row in rank0.rows] == [row["step"] for row in rank1.rows] == list(range(8))
    # Gradients are all-reduced (one norm on both ranks); each rank's loss is its own shard's.
    assert [row["grad_norm"] for row in rank0.rows] == pytest.approx([row["grad_norm"] for row in rank1.rows])
    assert [row["loss"] for row in rank0.rows] != [row["loss"] for row in rank1.rows]
    # Both ranks were re-seeded from seed_everything's seed when they joined (Lightning's `reset_seed`).
    assert rank0.rows[0]["rng_torch"] == rank1.rows[0]["rng_torch"]

    assert cli(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "identical: 8 optimizer steps (0..7) on rank 0" in out
    assert "identical: 8 optimizer steps (0..7) on rank 1" in out
