"""SimpleProfiler on its own: timing actions, the report table (as Lightning 2.6.6 prints it), where it goes."""

import logging
import pickle

import pytest

from fulmen.profilers import SimpleProfiler


def test_profile_records_one_duration_per_call_also_when_the_block_raises():
    profiler = SimpleProfiler()
    with profiler.profile("load") as name:
        assert name == "load"
    with pytest.raises(RuntimeError), profiler.profile("load"):
        raise RuntimeError("boom")
    assert len(profiler.recorded_durations["load"]) == 2 and profiler.current_actions == {}
    assert all(duration >= 0 for duration in profiler.recorded_durations["load"])


def test_starting_a_running_action_or_stopping_an_idle_one_raises():
    profiler = SimpleProfiler()
    profiler.start("a")
    with pytest.raises(ValueError, match="a which has already started"):
        profiler.start("a")
    with pytest.raises(ValueError, match=r"\(b\) which was never started"):
        profiler.stop("b")


def test_summary_without_extended_columns_reads_exactly_as_lightnings():
    profiler = SimpleProfiler(extended=False)
    profiler.recorded_durations["run_training_batch"] += [0.25, 0.75]
    profiler.recorded_durations["[_TrainingEpochLoop].train_dataloader_next"] += [0.125]
    profiler.setup("fit")
    # Printed by lightning 2.6.6's SimpleProfiler(extended=False) for the same durations.
    dashes = "-" * 98
    assert profiler.summary() == (
        f"FIT Profiler Report\n\n{dashes}\n"
        "|  Action                                    \t|  Mean duration (s)\t|  Total time (s) \t|\n"
        f"{dashes}\n"
        "|  run_training_batch                        \t|  0.5            \t|  1.0            \t|\n"
        "|  [_TrainingEpochLoop].train_dataloader_next\t|  0.125          \t|  0.125          \t|\n"
        f"{dashes}\n")


def test_extended_summary_has_calls_totals_and_percentages_sorted_by_share():
    profiler = SimpleProfiler()
    profiler.recorded_durations["a"] += [0.25, 0.75]
    profiler.recorded_durations["bb"] += [0.125]
    profiler.start_time -= 4.0  # at least 4 s of run time, so the shares are below 25 % and 3.125 %
    lines = profiler.summary().splitlines()
    assert lines[0] == "Profiler Report"
    assert [cell.strip() for cell in lines[3].split("|")[1:-1]] == [
        "Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
    total = [cell.strip() for cell in lines[5].split("|")[1:-1]]
    assert total[:3] == ["Total", "-", "3"] and total[4] == "100 %" and float(total[3]) >= 4.0
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[7:9]]
    assert [row[:4] for row in rows] == [["a", "0.5", "2", "1.0"], ["bb", "0.125", "1", "0.125"]]
    assert 0 < float(rows[1][4]) < float(rows[0][4]) <= 25.0


def test_an_empty_profiler_reports_only_its_title():
    assert SimpleProfiler().summary() == "Profiler Report\n\n"


def test_describe_appends_to_a_file_named_by_stage_and_filename(tmp_path):
    profiler = SimpleProfiler(dirpath=tmp_path / "out", filename="perf")
    profiler.setup("validate")
    with profiler.profile("x"):
        pass
    profiler.describe()
    profiler.describe()  # a second report is appended, not written over the first
    report = (tmp_path / "out" / "validate-perf.txt").read_text()
    assert report.count("VALIDATE Profiler Report") == 2 and "|  x" in report


def test_with_several_processes_the_local_rank_is_in_the_file_name(tmp_path):
    profiler = SimpleProfiler(filename="perf")
    profiler.setup("fit", local_rank=1, log_dir=str(tmp_path))
    with profiler.profile("x"):
        pass
    profiler.describe()
    assert [path.name for path in tmp_path.iterdir()] == ["fit-perf-1.txt"]


def test_describe_logs_on_local_rank_zero_only_without_a_filename(caplog):
    profiler = SimpleProfiler()
    with profiler.profile("x"):
        pass
    with caplog.at_level(logging.INFO, logger="fulmen.profilers"):
        profiler.describe()
        profiler.setup("fit", local_rank=1)
        profiler.describe()
    reports = [record.getMessage() for record in caplog.records if "Profiler Report" in record.getMessage()]
    assert len(reports) == 1 and "|  x" in reports[0]


def test_setup_keeps_a_given_dirpath_and_otherwise_takes_the_log_dir(tmp_path):
    given = SimpleProfiler(dirpath="mine")
    given.setup("fit", log_dir=str(tmp_path))
    default = SimpleProfiler()
    default.setup("fit", log_dir=str(tmp_path))
    assert given.dirpath == "mine" and default.dirpath == str(tmp_path) and default.local_rank == 0


def test_unsafe_characters_in_file_names_become_underscores():
    profiler = SimpleProfiler(filename="a/b:c")
    profiler.setup("fit")
    assert profiler._prepare_filename(action_name="[Strategy]X.training_step?") == \
        "fit-a_b_c-[Strategy]X.training_step_.txt"


def test_a_profiler_with_records_pickles_after_its_file_closed(tmp_path):
    profiler = SimpleProfiler(dirpath=tmp_path, filename="perf")
    with profiler.profile("x"):
        pass
    profiler.describe()
    copy = pickle.loads(pickle.dumps(profiler))
    assert len(copy.recorded_durations["x"]) == 1
