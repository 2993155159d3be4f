"""AdvancedProfiler: a cProfile listing per action, trimmed by `line_count_restriction`, raw dumps on request."""

import pickle
import pstats

import pytest

import fulmen as L
from fulmen.demos.boring_classes import BoringModel
from fulmen.profilers import AdvancedProfiler


def _busy():
    return sum(i * i for i in range(2000))


def test_each_action_gets_its_own_cprofile_listing():
    profiler = AdvancedProfiler()
    with profiler.profile("square"):
        _busy()
    with profiler.profile("idle"):
        pass
    report = profiler.summary()
    assert report.startswith("Profiler Report")
    square = report.split("Profile stats for: square")[1].split("Profile stats for: idle")[0]
    assert "_busy" in square and "function calls" in square
    assert "_busy" not in report.split("Profile stats for: idle")[1]


def test_line_count_restriction_limits_the_functions_listed():
    full, short = AdvancedProfiler(), AdvancedProfiler(line_count_restriction=1)
    for profiler in (full, short):
        with profiler.profile("work"):
            _busy()
            sorted(range(10))
    assert "restriction <1>" in short.summary()
    assert short.summary().count("\n") < full.summary().count("\n")


def test_stopping_an_action_never_started_raises():
    with pytest.raises(ValueError, match="never started"):
        AdvancedProfiler().stop("nothing")


def test_dump_stats_writes_a_loadable_prof_file_per_action(tmp_path):
    profiler = AdvancedProfiler(dirpath=tmp_path, filename="perf", dump_stats=True)
    profiler.setup("fit")
    with profiler.profile("square"):
        _busy()
    profiler.describe()
    stats = pstats.Stats(str(tmp_path / "fit-perf-square.prof"))
    assert any(name == "_busy" for _, _, name in stats.stats)
    assert "Profile stats for: square" in (tmp_path / "fit-perf.txt").read_text()


def test_dump_stats_without_a_directory_names_the_fix():
    profiler = AdvancedProfiler(dump_stats=True)
    with profiler.profile("x"):
        pass
    with pytest.raises(ValueError, match="dirpath"):
        profiler.summary()


def test_it_pickles_by_its_settings_as_spawned_processes_need():
    profiler = AdvancedProfiler(dirpath="d", filename="f", line_count_restriction=0.5, dump_stats=True)
    with profiler.profile("x"):
        pass
    copy = pickle.loads(pickle.dumps(profiler))
    assert (copy.dirpath, copy.filename, copy.line_count_restriction, copy.dump_stats) == ("d", "f", 0.5, True)
    assert not copy.profiled_actions


def test_in_a_trainer_the_training_step_is_listed(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, profiler=AdvancedProfiler(filename="adv"), max_epochs=1,
                        limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(BoringModel())
    report = (tmp_path / "fit-adv.txt").read_text()
    assert report.startswith("FIT Profiler Report")
    assert "Profile stats for: [Strategy]SingleDeviceStrategy.training_step" in report
    assert "Profile stats for: run_training_batch" in report
