"""The example script as a user runs it: `python examples/cli/regression.py fit --config examples/cli/config.yaml`."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "cli" / "regression.py"
CONFIG = ROOT / "examples" / "cli" / "config.yaml"


def _run(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_example_fit_with_config(tmp_path):
    result = _run(tmp_path, "fit", "--config", str(CONFIG), "--trainer.max_epochs=1", "--data.num_samples=64")
    assert result.returncode == 0, result.stderr
    log_dir = tmp_path / "cli_logs" / "lightning_logs" / "version_0"
    saved = yaml.safe_load((log_dir / "config.yaml").read_text())
    assert saved["seed_everything"] == 42 and saved["trainer"]["max_epochs"] == 1
    assert saved["data"]["num_samples"] == 64
    # A link target is left out of the saved config (set from its source, as Lightning), but is a hyperparameter.
    assert "in_features" not in saved["model"]
    assert yaml.safe_load((log_dir / "hparams.yaml").read_text())["in_features"] == 8
    assert [c["class_path"] for c in saved["trainer"]["callbacks"]] == ["fulmen.callbacks.ModelCheckpoint",
                                                                       "fulmen.callbacks.EarlyStopping"]
    assert len(list((log_dir / "checkpoints").glob("epoch=0-step=*.ckpt"))) == 1
    assert "val_loss" in (log_dir / "metrics.csv").read_text()
    # The same command again would overwrite that run's config: refused, status 1 (an error, not a usage error).
    again = _run(tmp_path, "fit", "--config", str(CONFIG), "--trainer.max_epochs=1",
                 "--trainer.logger.init_args.version=0")
    assert again.returncode == 1 and "to NOT exist" in again.stderr


def test_example_print_config_and_usage_errors(tmp_path):
    printed = _run(tmp_path, "fit", "--config", str(CONFIG), "--print_config")
    assert printed.returncode == 0, printed.stderr
    config = yaml.safe_load(printed.stdout)
    assert config["trainer"]["logger"]["class_path"] == "fulmen.loggers.CSVLogger"
    assert config["model"] == {"hidden": 16, "lr": 0.05}
    bad = _run(tmp_path, "fit", "--model.hidden=wide")
    assert bad.returncode == 2 and "model.hidden" in bad.stderr and "Traceback" not in bad.stderr
    unknown = _run(tmp_path, "fit", "--trainer.max_epochz=1")
    assert unknown.returncode == 2 and "--trainer.max_epochz" in unknown.stderr and "Traceback" not in unknown.stderr


def test_example_under_ddp_saves_once_and_all_ranks_refuse_together(tmp_path):
    ddp = ["--trainer.max_epochs=1", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--data.num_samples=64"]
    first = _run(tmp_path, "fit", "--config", str(CONFIG), *ddp)
    assert first.returncode == 0, first.stderr
    assert [p.name for p in (tmp_path / "cli_logs" / "lightning_logs").iterdir()] == ["version_0"]
    # Rank 0 finds the file and every rank stops (no rank left waiting in a collective).
    again = _run(tmp_path, "fit", "--config", str(CONFIG), *ddp, "--trainer.logger.init_args.version=0")
    assert again.returncode != 0 and "to NOT exist" in again.stderr
