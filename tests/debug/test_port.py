"""`python -m fulmen port PATH...`: a Lightning project's imports rewritten to fulmen (a diff, or `--write`), the
ported project training with Lightning unimportable, exit statuses and errors. The report of what fulmen does not
support is tested in test_port_findings.py."""

import os
import stat
import subprocess
import sys

import pytest

import fulmen
from fulmen.__main__ import main
from helpers.port_projects import CLEAN, findings_of, run_port, snapshot, write_project

SRC = os.path.dirname(os.path.dirname(fulmen.__file__))

TRAIN_DIFF = """\
--- {path}
+++ {path}
@@ -1,6 +1,6 @@
-import lightning as L
-import lightning.pytorch
-from lightning.pytorch.callbacks import (
+import fulmen as L
+import fulmen
+from fulmen.callbacks import (
     EarlyStopping,  # a multi-line import keeps its layout and comments
     ModelCheckpoint,
 )
@@ -17,6 +17,6 @@
     trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[counter])
     trainer.fit(TinyModel(), datamodule=TinyData())
-    bar = lightning.pytorch.callbacks.TQDMProgressBar
+    bar = fulmen.callbacks.TQDMProgressBar
     print("framework", type(trainer).__module__.split(".")[0], "bar", bar.__module__.split(".")[0],
           "batches", counter.seen, "steps", trainer.global_step)
"""


def test_dry_run_prints_the_diff_and_changes_nothing(tmp_path, capsys):
    write_project(tmp_path, CLEAN)
    before = snapshot(tmp_path)
    code, out, err = run_port(capsys, tmp_path)
    assert code == 1 and err == ""
    assert TRAIN_DIFF.format(path=tmp_path / "train.py") in out
    assert f"+import fulmen as pl  # the Lightning 1.x package name\n" in out
    assert "-from lightning.pytorch import LightningDataModule\n+from fulmen import LightningDataModule\n" in out
    assert "-import lightning.pytorch as lp\n+import fulmen as lp\n" in out
    assert ("-    - class_path: lightning.pytorch.callbacks.EarlyStopping  # stop when the loss stalls\n"
            "+    - class_path: fulmen.callbacks.EarlyStopping  # stop when the loss stalls\n") in out
    assert findings_of(out) == []
    assert out.endswith("checked 6 files: 5 to port (run with --write to apply), 0 findings, 0 errors\n")
    assert snapshot(tmp_path) == before


def test_write_ports_the_project_which_then_trains_with_fulmen(tmp_path, capsys):
    write_project(tmp_path, CLEAN)
    os.chmod(tmp_path / "train.py", 0o750)
    code, out, _ = run_port(capsys, "--write", tmp_path)
    assert code == 0
    assert f"ported {tmp_path / 'train.py'}\n" in out and "---" not in out
    train = (tmp_path / "train.py").read_text()
    assert train.startswith("import fulmen as L\nimport fulmen\nfrom fulmen.callbacks import (\n"
                            "    EarlyStopping,  # a multi-line import keeps its layout and comments\n")
    assert '# lightning.pytorch.Trainer in a comment, and in a string, stays\n' in train
    assert 'note = "pytorch_lightning.Trainer"' in train
    assert '"""Models. (This docstring names lightning.pytorch and stays as it is.)"""' in (
        tmp_path / "tinyproj/models.py").read_text()
    assert "class_path: fulmen.callbacks.EarlyStopping  # stop" in (tmp_path / "config.yaml").read_text()
    assert stat.S_IMODE(os.stat(tmp_path / "train.py").st_mode) == 0o750  # the atomic rename keeps the mode
    assert not [p for p in tmp_path.rglob("*") if ".fulmen-port-" in p.name]
    assert run_port(capsys, tmp_path)[0] == 0  # a ported project has nothing left to do
    # Run it with Lightning made unimportable: the ported project needs only fulmen.
    blocker = ("import runpy, sys; sys.modules['lightning'] = sys.modules['pytorch_lightning'] = None; "
               "runpy.run_path('train.py', run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, str(tmp_path)]))
    result = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "framework fulmen bar fulmen batches 8 steps 8" in result.stdout


def test_line_endings_and_python_forms(tmp_path, capsys):
    source = ("import os, lightning.pytorch.callbacks as cbs, pytorch_lightning\r\n"
              "from lightning import Fabric, Trainer  # both\r\n"
              "from lightning import pytorch as pl\r\n"
              "if True:\r\n"
              "    from pytorch_lightning.callbacks import ModelCheckpoint, XLAStatsMonitor\r\n"
              "t = pytorch_lightning.Trainer(accelerator='ddp')\r\n")
    (tmp_path / "forms.py").write_bytes(source.encode())
    code, out, _ = run_port(capsys, "--write", tmp_path / "forms.py")
    assert code == 1
    assert (tmp_path / "forms.py").read_bytes().decode() == (
        "import os, fulmen.callbacks as cbs, fulmen\r\n"
        "from fulmen import Trainer\r\nfrom lightning import Fabric  # both\r\n"
        "import fulmen as pl\r\n"
        "if True:\r\n"
        "    from fulmen.callbacks import ModelCheckpoint\r\n"
        "    from pytorch_lightning.callbacks import XLAStatsMonitor\r\n"
        "t = fulmen.Trainer(accelerator='ddp')\r\n")
    assert "forms.py:6:31: [unsupported] `pytorch_lightning.Trainer(accelerator='ddp')`: Lightning 1.x took the " \
           "strategy here. Fix: use `strategy='ddp'`." in out


def test_nothing_to_port_exits_zero(tmp_path, capsys):
    write_project(tmp_path, {"plain.py": "import torch\n", "fulmen_already.py": "import fulmen as L\nL.Trainer\n",
                      "ci.yaml": "steps: [build]\n"})
    assert run_port(capsys, tmp_path) == (0, "checked 3 files: 0 to port (run with --write to apply), 0 findings, "
                                          "0 errors\n", "")


def test_bad_paths_are_refused_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("lightning")
    code, out, err = run_port(capsys, tmp_path / "missing", tmp_path / "notes.txt")
    assert (code, out) == (2, "")
    assert err == (f"error: {tmp_path / 'missing'}: no such file or directory\n"
                   f"error: {tmp_path / 'notes.txt'}: not a Python file or a YAML config (expected .py, .yaml or "
                   ".yml)\n")


def test_a_file_that_does_not_parse_is_an_error_and_the_others_are_still_ported(tmp_path, capsys):
    write_project(tmp_path, {"broken.py": "import pytorch_lightning as pl\ndef f(:\n",
                             "ok.py": "import pytorch_lightning\n"})
    code, out, _ = run_port(capsys, tmp_path)
    assert code == 2
    assert f"{tmp_path / 'broken.py'}:2:7: [error] cannot parse the file: invalid syntax" in out
    assert "+import fulmen\n" in out


def test_write_through_a_symbolic_link_rewrites_its_target(tmp_path, capsys):
    (tmp_path / "real.py").write_text("import pytorch_lightning as pl\n")
    (tmp_path / "link.py").symlink_to(tmp_path / "real.py")
    assert run_port(capsys, "--write", tmp_path / "link.py")[0] == 0
    assert (tmp_path / "link.py").is_symlink()
    assert (tmp_path / "real.py").read_text() == "import fulmen as pl\n"


def test_command_line(tmp_path):
    """Once through a fresh interpreter, as a user runs it."""
    write_project(tmp_path, {"train.py": "import pytorch_lightning as pl\ntrainer = pl.Trainer(tpu_cores=8)\n"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "fulmen", "port", "train.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        "--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-import pytorch_lightning as pl\n+import fulmen as pl\n"
        " trainer = pl.Trainer(tpu_cores=8)\n"
        "train.py:2:22: [removed] `pl.Trainer(tpu_cores=...)` was removed in Lightning 2.0. Fix: TPUs are not "
        "provided; use `devices=N`.\n"
        "checked 1 file: 1 to port (run with --write to apply), 1 finding, 0 errors\n")


@pytest.mark.parametrize("argv", [["port"], ["port", "--nope", "x.py"]])
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
