"""CSVLogger: directory layout, versions, metrics.csv rows and header, prefix, hparams.yaml, rank zero.

Row layout and version numbering were checked against Lightning 2.6's CSVLogger.
"""

import csv
from argparse import Namespace

import pytest
import yaml
from torch.nn import functional as F

from fulmen.loggers import CSVLogger
from fulmen.utilities.rank_zero import rank_zero_only
from helpers.log_fixtures import LossLoggingModule, fit_with, log_trainer
from helpers.tiny import make_loader


def _rows(path):
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


class _CsvModule(LossLoggingModule):
    """Logs train_loss per step, val_loss per epoch, `ep` at train epoch end and `late` only in epoch 1."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.current_epoch == 1:
            self.log("late", 1.0)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def on_train_epoch_end(self):
        self.log("ep", float(self.current_epoch))


def _fit_csv(tmp_path, logger):
    return fit_with(tmp_path, logger, _CsvModule(), epochs=2, train_batches=2, val_batches=1, every=1)


def test_layout_is_name_version_with_metrics_and_hparams(tmp_path):
    logger = CSVLogger(tmp_path)
    trainer = _fit_csv(tmp_path, logger)
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert logger.log_dir == str(run_dir) == trainer.log_dir
    assert (logger.name, logger.version, logger.root_dir) == ("lightning_logs", 0, str(tmp_path / "lightning_logs"))
    assert sorted(path.name for path in run_dir.iterdir()) == ["hparams.yaml", "metrics.csv"]


def test_version_auto_increments_across_runs(tmp_path):
    versions = []
    for _ in range(3):
        logger = CSVLogger(tmp_path, name="exp")
        _fit_csv(tmp_path, logger)
        versions.append(logger.version)
    assert versions == [0, 1, 2]
    assert sorted(path.name for path in (tmp_path / "exp").iterdir()) == ["version_0", "version_1", "version_2"]


def test_explicit_versions_int_and_str(tmp_path):
    _fit_csv(tmp_path, CSVLogger(tmp_path, version=7))
    _fit_csv(tmp_path, CSVLogger(tmp_path, version="baseline"))
    after = CSVLogger(tmp_path)
    assert after.version == 8  # the next free number after the largest version_N
    assert (tmp_path / "lightning_logs" / "version_7" / "metrics.csv").is_file()
    assert (tmp_path / "lightning_logs" / "baseline" / "metrics.csv").is_file()
    assert after.log_dir == str(tmp_path / "lightning_logs" / "version_8")


def test_metrics_rows_have_step_epoch_and_separate_val_and_epoch_rows(tmp_path):
    logger = CSVLogger(tmp_path)
    _fit_csv(tmp_path, logger)
    header, rows = _rows(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    assert header == ["ep", "epoch", "late", "step", "train_loss", "val_loss"]
    filled = [(row["step"], row["epoch"], sorted(k for k in ("ep", "late", "train_loss", "val_loss") if row[k]))
              for row in rows]
    assert filled == [
        ("0", "0", ["train_loss"]),
        ("1", "0", ["train_loss"]),
        ("1", "0", ["val_loss"]),
        ("1", "0", ["ep"]),
        ("2", "1", ["late", "train_loss"]),
        ("3", "1", ["late", "train_loss"]),
        ("3", "1", ["val_loss"]),
        ("3", "1", ["ep"]),
    ]
    assert [float(row["ep"]) for row in rows if row["ep"]] == [0.0, 1.0]


def test_new_key_rewrites_header_and_keeps_earlier_rows(tmp_path):
    logger = CSVLogger(tmp_path, version=0)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()
    logger.log_metrics({"a": 2.0, "b": 5.0}, step=1)
    logger.save()
    logger.log_metrics({"c": 3.0}, step=2)
    logger.finalize("success")
    header, rows = _rows(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    assert header == ["a", "b", "c", "step"]
    assert rows == [
        {"a": "1.0", "b": "", "c": "", "step": "0"},
        {"a": "2.0", "b": "5.0", "c": "", "step": "1"},
        {"a": "", "b": "", "c": "3.0", "step": "2"},
    ]


def test_prefix_is_joined_with_dash_except_step(tmp_path):
    logger = CSVLogger(tmp_path, name="p", prefix="pre")
    _fit_csv(tmp_path, logger)
    header, _ = _rows(tmp_path / "p" / "version_0" / "metrics.csv")
    assert header == ["pre-ep", "pre-epoch", "pre-late", "pre-train_loss", "pre-val_loss", "step"]


def test_hparams_yaml_holds_saved_hyperparameters(tmp_path):
    logger = CSVLogger(tmp_path)
    fit_with(tmp_path, logger, LossLoggingModule(lr=0.05, hidden=16), epochs=1)
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    assert saved == {"lr": 0.05, "hidden": 16}


def test_no_hparams_yaml_without_save_hyperparameters(tmp_path):
    # Lightning 2.6 writes hparams.yaml only once hyperparameters were logged.
    fit_with(tmp_path, CSVLogger(tmp_path), LossLoggingModule(save_hparams=False), epochs=1)
    assert not (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").exists()


def test_log_hyperparams_accepts_namespace(tmp_path):
    logger = CSVLogger(tmp_path, name=None, version="v")
    logger.log_hyperparams(Namespace(depth=3, act="relu"))
    logger.save()
    assert yaml.safe_load((tmp_path / "v" / "hparams.yaml").read_text()) == {"depth": 3, "act": "relu"}


def test_trainer_log_dir_follows_csv_logger(tmp_path):
    logger = CSVLogger(tmp_path / "logs", name="run", version=3)
    trainer = log_trainer(tmp_path, logger=logger)
    assert trainer.logger is logger
    assert trainer.log_dir == str(tmp_path / "logs" / "run" / "version_3")


def test_nothing_written_off_rank_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CSVLogger(tmp_path / "logs")
    trainer = log_trainer(tmp_path, logger=logger, max_epochs=2, limit_train_batches=2, log_every_n_steps=1)
    trainer.fit(LossLoggingModule(), make_loader())
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("flush_every", [1, 100])
def test_metrics_reach_disk_by_the_end_of_fit(tmp_path, flush_every):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=flush_every)
    fit_with(tmp_path, logger, epochs=1, train_batches=3, val_batches=0, every=1)
    _, rows = _rows(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    assert [row["step"] for row in rows] == ["0", "1", "2"]


def test_metrics_without_a_step_are_flushed_by_the_rows_waiting(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"a": 1.0})  # no step: the waiting rows count as the step (Lightning)
    with open(logger.experiment.metrics_file_path) as file:
        assert list(csv.DictReader(file)) == [{"a": "1.0", "step": "0"}]


def test_an_existing_version_directory_warns_and_its_metrics_file_is_replaced(tmp_path):
    old = tmp_path / "exp" / "version_0"
    old.mkdir(parents=True)
    (old / "metrics.csv").write_text("old,step\n1,0\n")
    logger = CSVLogger(tmp_path, name="exp", version=0)
    with pytest.warns(UserWarning, match="Experiment logs directory .*version_0 exists and is not empty. Previous log "
                                         "files in this directory will be deleted when the new ones are saved!"):
        logger.experiment
    assert not (old / "metrics.csv").exists()
    logger.log_metrics({"new": 2.0}, step=0)
    logger.save()
    assert (old / "metrics.csv").read_text().splitlines()[0] == "new,step"


@pytest.mark.parametrize("url", ["memory://logs", "s3://bucket/logs"])
def test_a_remote_save_dir_is_refused_with_the_fix(url):
    with pytest.raises(NotImplementedError, match=f"Cannot write logs to '{url}': fulmen reads and writes the local "
                                                  "filesystem only"):
        CSVLogger(url)


def test_a_subclass_naming_itself_gets_its_own_log_dir(tmp_path):
    class Named(CSVLogger):
        @property
        def name(self):
            return "nm"

        @property
        def version(self):
            return "v"

    assert Named(tmp_path).log_dir == str(tmp_path / "nm" / "v")  # as Lightning: through the properties
