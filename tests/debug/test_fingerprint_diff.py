"""`python -m fulmen diff` on fingerprint files written directly: what it compares, how it reports, and its errors."""

import pytest

from fulmen.__main__ import main as cli
from fulmen.debug.fingerprint_file import COLUMNS, FingerprintWriter, read_fingerprints


def rows(steps, **changes):
    """One block of rows for `steps`; `changes` maps a column to {step: value}."""
    columns = {name: [] for name in COLUMNS}
    for step in steps:
        row = {"step": step, "epoch": step // 10, "batch_idx": step % 10, "optimizer": 0, "loss": 1.0 / (step + 1),
               "grad_norm": 2.0 + step, "rng_torch": 1000 + step, "rng_cuda": 0,
               "rng_python": 77 if step % 4 == 0 else 0, "rng_numpy": 0}
        for name, at in changes.items():
            row.update({name: at[step]} if step in at else {})
        for name in COLUMNS:
            columns[name].append(row[name])
    return columns


def write(path, *blocks, sessions=None):
    """Write a file: `sessions` maps a block index to the META written before it (default: one start session)."""
    sessions = sessions or {0: {"event": "start", "step": 0, "rank": 0, "sample_every": 4}}
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = FingerprintWriter(str(path), append=False)
    for index, block in enumerate(blocks):
        if index in sessions:
            writer.write_meta(sessions[index])
        writer.write_rows(block)
    writer.close()
    return path


def diff(capsys, a, b, *options):
    code = cli(["diff", str(a), str(b), *options])
    return code, capsys.readouterr()


def test_identical_files(tmp_path, capsys):
    write(tmp_path / "a" / "fingerprints.bin", rows(range(0, 6)), rows(range(6, 12)))
    write(tmp_path / "b" / "fingerprints.bin", rows(range(0, 12)))  # block boundaries do not matter
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 0
    assert out.out.splitlines()[-1] == ("identical: 12 optimizer steps (0..11) on rank 0 agree in loss, grad_norm, "
                                        "rng_torch, rng_python")


def test_first_divergence_names_the_step_the_component_and_both_values(tmp_path, capsys):
    write(tmp_path / "a.bin", rows(range(12)))
    write(tmp_path / "b.bin", rows(range(12), grad_norm={6: 8.5, 9: 0.0}, loss={9: 0.0}))
    code, out = diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin")
    assert code == 1
    assert out.out.splitlines()[2:] == [
        "diverged at optimizer step 6 (epoch 0, batch_idx 6, optimizer 0) on rank 0: grad_norm",
        "  grad_norm  A 8.0   B 8.5",
        "steps 0..5 are identical (6 rows)",
    ]


def test_tolerances_accept_small_float_differences(tmp_path, capsys):
    write(tmp_path / "a.bin", rows(range(4)))
    write(tmp_path / "b.bin", rows(range(4), loss={2: 1.0 / 3 + 1e-9}))
    assert diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin")[0] == 1
    assert diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin", "--atol", "1e-8")[0] == 0


def test_a_skipped_step_is_a_divergence_of_the_position(tmp_path, capsys):
    write(tmp_path / "a.bin", rows(range(8)))
    write(tmp_path / "b.bin", rows([0, 1, 2, 4, 5, 6, 7]))
    code, out = diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin")
    assert code == 1
    assert "diverged at optimizer step 3 (epoch 0, batch_idx 3, optimizer 0) on rank 0: step, batch_idx" in out.out


def test_a_sampled_rng_names_the_interval_it_changed_in(tmp_path, capsys):
    write(tmp_path / "a.bin", rows(range(12)))
    write(tmp_path / "b.bin", rows(range(12), rng_python={8: 78}))
    code, out = diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin")
    assert code == 1
    assert "rng_python" in out.out.splitlines()[2]
    assert "  rng_python A 0x000000000000004d   B 0x000000000000004e" in out.out
    assert "(rng_python is sampled every 4 steps: it changed after step 4)" in out.out


def test_a_resumed_session_replaces_the_steps_it_trains_again(tmp_path, capsys):
    resumed = {0: {"event": "start", "step": 0, "rank": 0},
               1: {"event": "resume", "step": 5, "rank": 0, "checkpoint": "last.ckpt"}}
    # The first session got to step 7 before dying; the resumed one continues from the checkpoint of step 5.
    path = write(tmp_path / "b.bin", rows(range(8), loss={5: 9.0, 6: 9.0, 7: 9.0}), rows(range(5, 12)),
                 sessions=resumed)
    recorded = read_fingerprints(path)
    assert [row["step"] for row in recorded.rows] == list(range(12))
    assert recorded.sessions[1]["superseded"] == 3
    write(tmp_path / "a.bin", rows(range(12)))
    code, out = diff(capsys, tmp_path / "a.bin", path)
    assert code == 0
    assert "resumed at step 5 from last.ckpt" in out.out.splitlines()[1]


def test_divergence_at_a_resume_point_gets_a_hint(tmp_path, capsys):
    resumed = {0: {"event": "start", "step": 0, "rank": 0}, 1: {"event": "resume", "step": 5, "rank": 0}}
    write(tmp_path / "a.bin", rows(range(10)))
    write(tmp_path / "b.bin", rows(range(5)), rows(range(5, 10), rng_torch={5: 1}), sessions=resumed)
    code, out = diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin")
    assert code == 1
    assert "hint: run B resumed from a checkpoint at exactly this step" in out.out


def test_runs_of_different_lengths_compare_the_common_steps(tmp_path, capsys):
    write(tmp_path / "a.bin", rows(range(10)))
    write(tmp_path / "b.bin", rows(range(3, 6)), sessions={0: {"event": "resume", "step": 3, "rank": 0}})
    code, out = diff(capsys, tmp_path / "a.bin", tmp_path / "b.bin")
    assert code == 0
    assert "identical: 3 optimizer steps (3..5)" in out.out
    assert "note: run A goes on to step 9" in out.out
    assert "compared from step 3" in out.out


def test_every_rank_is_compared_and_the_earliest_divergence_reported(tmp_path, capsys):
    for run, change in (("a", {}), ("b", {"loss": {4: 0.5}})):
        write(tmp_path / run / "fingerprints.bin", rows(range(8)))
        write(tmp_path / run / "fingerprints.rank1.bin", rows(range(8), **change),
              sessions={0: {"event": "start", "step": 0, "rank": 1}})
    code, out = diff(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1
    assert "diverged at optimizer step 4 (epoch 0, batch_idx 4, optimizer 0) on rank 1: loss" in out.out


def test_a_file_cut_short_is_read_up_to_its_last_whole_block(tmp_path, capsys):
    path = write(tmp_path / "a.bin", rows(range(4)), rows(range(4, 8)))
    path.write_bytes(path.read_bytes()[:-5])
    assert [row["step"] for row in read_fingerprints(path).rows] == [0, 1, 2, 3]
    write(tmp_path / "b.bin", rows(range(4)))
    code, out = diff(capsys, path, tmp_path / "b.bin")
    assert code == 0
    assert "note: run A's file ends inside a block" in out.out


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "missing", "missing does not exist; pass a run directory"),
    (lambda tmp: tmp, "holds no fingerprints.bin: record the run with `Trainer(fingerprint=True)`"),
    (lambda tmp: (tmp / "x.bin").write_bytes(b"not a fingerprint file at all") and tmp / "x.bin",
     "is not a fulmen fingerprint file"),
])
def test_unusable_input_exits_2_with_a_clear_message(tmp_path, capsys, make, message):
    write(tmp_path / "good" / "fingerprints.bin", rows(range(3)))
    code, out = diff(capsys, tmp_path / "good", make(tmp_path))
    assert code == 2
    assert message in out.err and out.out == ""
