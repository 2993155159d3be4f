"""`python -m fulmen port PATH...`: a Lightning project's imports rewritten to fulmen (diff, `--write`), and the
report of what fulmen does not support or runs differently, on fixture projects written into tmp_path."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

import fulmen
from fulmen.__main__ import main

SRC = os.path.dirname(os.path.dirname(fulmen.__file__))


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _snapshot(root):
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _port(capsys, *args):
    code = main(["port", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _findings(out):
    return [line for line in out.splitlines() if "] " in line and line.split(":")[0].endswith((".py", ".yaml"))]


# A working Lightning project that uses every import form: a package, a script, a LightningCLI config.
CLEAN = {
    "tinyproj/__init__.py": "",
    "tinyproj/models.py": '''
        """Models. (This docstring names lightning.pytorch and stays as it is.)"""
        import torch
        import pytorch_lightning as pl  # the Lightning 1.x package name


        class TinyModel(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(4, 1)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = torch.nn.functional.mse_loss(self.layer(x), y)
                self.log("train_loss", loss)
                return loss

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)
        ''',
    "tinyproj/data.py": """
        import torch
        from lightning.pytorch import LightningDataModule
        from torch.utils.data import DataLoader, TensorDataset


        class TinyData(LightningDataModule):
            def train_dataloader(self):
                generator = torch.Generator().manual_seed(0)
                data = TensorDataset(torch.randn(32, 4, generator=generator), torch.randn(32, 1, generator=generator))
                return DataLoader(data, batch_size=8)
        """,
    "tinyproj/callbacks.py": """
        import lightning.pytorch as lp


        class CountBatches(lp.Callback):
            def __init__(self):
                self.seen = 0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.seen += 1
        """,
    "train.py": """
        import lightning as L
        import lightning.pytorch
        from lightning.pytorch.callbacks import (
            EarlyStopping,  # a multi-line import keeps its layout and comments
            ModelCheckpoint,
        )

        from tinyproj.callbacks import CountBatches
        from tinyproj.data import TinyData
        from tinyproj.models import TinyModel

        if __name__ == "__main__":
            # lightning.pytorch.Trainer in a comment, and in a string, stays
            note = "pytorch_lightning.Trainer"
            L.seed_everything(0)
            counter = CountBatches()
            trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, callbacks=[counter])
            trainer.fit(TinyModel(), datamodule=TinyData())
            bar = lightning.pytorch.callbacks.TQDMProgressBar
            print("framework", type(trainer).__module__.split(".")[0], "bar", bar.__module__.split(".")[0],
                  "batches", counter.seen, "steps", trainer.global_step)
        """,
    "config.yaml": """
        trainer:
          max_epochs: 2
          callbacks:
            - class_path: lightning.pytorch.callbacks.EarlyStopping  # stop when the loss stalls
              init_args:
                monitor: train_loss
        model:
          class_path: tinyproj.models.TinyModel
        """,
}

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
    _write(tmp_path, CLEAN)
    before = _snapshot(tmp_path)
    code, out, err = _port(capsys, tmp_path)
    assert code == 1 and err == ""
    assert TRAIN_DIFF.format(path=tmp_path / "train.py") in out
    assert f"+import fulmen as pl  # the Lightning 1.x package name\n" in out
    assert "-from lightning.pytorch import LightningDataModule\n+from fulmen import LightningDataModule\n" in out
    assert "-import lightning.pytorch as lp\n+import fulmen as lp\n" in out
    assert ("-    - class_path: lightning.pytorch.callbacks.EarlyStopping  # stop when the loss stalls\n"
            "+    - class_path: fulmen.callbacks.EarlyStopping  # stop when the loss stalls\n") in out
    assert _findings(out) == []
    assert out.endswith("checked 6 files: 5 to port (run with --write to apply), 0 findings, 0 errors\n")
    assert _snapshot(tmp_path) == before


def test_write_ports_the_project_which_then_trains_with_fulmen(tmp_path, capsys):
    _write(tmp_path, CLEAN)
    os.chmod(tmp_path / "train.py", 0o750)
    code, out, _ = _port(capsys, "--write", tmp_path)
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
    assert _port(capsys, tmp_path)[0] == 0  # a ported project has nothing left to do
    # Run it with Lightning made unimportable: the ported project needs only fulmen.
    blocker = ("import runpy, sys; sys.modules['lightning'] = sys.modules['pytorch_lightning'] = None; "
               "runpy.run_path('train.py', run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, str(tmp_path)]))
    result = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "framework fulmen bar fulmen batches 8 steps 8" in result.stdout


# A project using what fulmen does not provide, hooks Lightning 2.0 removed, and 1.x Trainer arguments.
LEGACY = {
    "legacy/__init__.py": "",
    "legacy/model.py": """
        import pytorch_lightning as pl


        class Base(pl.LightningModule):
            def training_step(self, batch, batch_idx, optimizer_idx):
                self.log("loss", 0.0, sync_dist_op="mean")

            def training_epoch_end(self, outputs):
                pass


        class Model(Base):
            def validation_step_end(self, outputs):
                pass

            def on_pretrain_routine_start(self):
                pass

            def on_train_batch_start(self, batch, batch_idx, dataloader_idx):
                pass

            def export(self):
                return self.to_tensorrt()
        """,
    "legacy/callbacks.py": """
        from pytorch_lightning.callbacks import Callback


        class Saver(Callback):
            def on_save_checkpoint(self, trainer, pl_module, checkpoint):
                return {"seen": 1}

            def on_load_checkpoint(self, trainer, pl_module, callback_state):
                pass

            def on_train_epoch_end(self, trainer, pl_module, outputs):
                pass
        """,
    "run.py": """
        from lightning.pytorch import Trainer
        from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

        from legacy.model import Model

        trainer = Trainer(gpus=2, strategy="deepspeed_stage_2", accelerator="tpu", precision="transformer-engine")
        trainer.fit(Model(), train_dataloader=None)
        trainer.limit_val_batches = 0.5
        Model.load_from_checkpoint("last.ckpt")
        """,
    "fabric_loop.py": """
        import lightning as L
        from lightning.fabric import Fabric

        fabric = L.Fabric(accelerator="cpu")
        trainer = L.Trainer(max_epochs=1)
        """,
    "configs/run.yaml": """
        trainer:
          gpus: 1
          strategy: xla
          callbacks:
            - class_path: pytorch_lightning.callbacks.ModelCheckpoint
              init_args:
                period: 2
        """,
}

# (position, tag, a phrase of the message): the full report, one finding per problem.
LEGACY_FINDINGS = [
    ("configs/run.yaml:2:3", "removed", "`trainer: gpus` was removed in Lightning 2.0. Fix: use `accelerator='gpu'"),
    ("configs/run.yaml:3:13", "unsupported", "XLA/TPU is not provided by fulmen"),
    ("configs/run.yaml:7:9", "unsupported", "`pytorch_lightning.callbacks.ModelCheckpoint` takes no argument "
                                             "`period`"),
    ("fabric_loop.py:2:1", "unsupported", "`lightning.fabric` is not provided: fulmen is the `lightning.pytorch` half"),
    ("fabric_loop.py:4:10", "unsupported", "`lightning.Fabric`: `lightning.fabric` is not provided"),
    ("legacy/callbacks.py:5:5", "removed", "`Saver.on_save_checkpoint` returns a value, which Lightning 2.0 ignores"),
    ("legacy/callbacks.py:8:54", "removed", "`Saver.on_load_checkpoint` takes `callback_state`"),
    ("legacy/callbacks.py:11:54", "removed", "`Saver.on_train_epoch_end` takes `outputs`"),
    ("legacy/model.py:5:47", "removed", "`Base.training_step` takes `optimizer_idx`: Lightning 2.0 removed "
                                        "`optimizer_idx`: with several optimizers set "
                                        "`self.automatic_optimization = False`"),
    ("legacy/model.py:6:31", "unsupported", "`self.log` takes no argument `sync_dist_op`"),
    ("legacy/model.py:8:5", "removed", "`Base.training_epoch_end` was removed in Lightning 2.0 and fulmen never calls "
                                       "it. Move its code to `on_train_epoch_end`; to use step outputs there, keep "
                                       "them in a list on the module. fulmen refuses to train a model that defines "
                                       "it."),
    ("legacy/model.py:13:5", "removed", "`Model.validation_step_end` was removed in Lightning 2.0"),
    ("legacy/model.py:16:5", "removed", "`Model.on_pretrain_routine_start` was removed in Lightning 2.0 and fulmen "
                                        "never calls it. Fix: move its code to `on_fit_start`"),
    ("legacy/model.py:19:54", "removed", "`Model.on_train_batch_start` takes `dataloader_idx`"),
    ("legacy/model.py:23:16", "unsupported", "`self.to_tensorrt` is not provided by fulmen"),
    ("run.py:2:55", "unsupported", "`lightning.pytorch.strategies.DeepSpeedStrategy`: DeepSpeed is not provided"),
    ("run.py:6:19", "removed", "`Trainer(gpus=...)` was removed in Lightning 2.0"),
    ("run.py:6:27", "unsupported", "`Trainer(strategy='deepspeed_stage_2')`: DeepSpeed is not provided by fulmen. "
                                   "Fix: use strategy='fsdp'"),
    ("run.py:6:57", "unsupported", "`Trainer(accelerator='tpu')`: XLA/TPU is not provided by fulmen"),
    ("run.py:6:76", "unsupported", "`Trainer(precision='transformer-engine')`: NVIDIA Transformer Engine precision "
                                   "is not provided by fulmen. Fix: use precision='bf16-mixed'"),
    ("run.py:7:22", "removed", "`trainer.fit(train_dataloader=...)` was removed in Lightning 2.0. Fix: use "
                               "`train_dataloaders=`"),
    ("run.py:8:1", "differs", "`trainer.limit_val_batches` is read-only: pass `Trainer(limit_val_batches=...)`"),
    ("run.py:9:1", "differs", "`Model.load_from_checkpoint(...)`: fulmen loads checkpoints with `weights_only=True`"),
]


def test_findings_name_line_column_reason_and_fix(tmp_path, capsys):
    _write(tmp_path, LEGACY)
    code, out, _ = _port(capsys, tmp_path)
    assert code == 1
    findings = _findings(out)
    assert len(findings) == len(LEGACY_FINDINGS), "\n".join(findings)
    for line, (position, tag, phrase) in zip(findings, LEGACY_FINDINGS):
        assert line.startswith(f"{tmp_path / position}: [{tag}] "), line
        assert phrase in line, line
    assert out.endswith(f"checked 6 files: 5 to port (run with --write to apply), {len(findings)} findings, "
                        "0 errors\n")


def test_unsupported_names_are_kept_on_lightning_not_rewritten_into_broken_imports(tmp_path, capsys):
    _write(tmp_path, LEGACY)
    code, out, _ = _port(capsys, "--write", tmp_path)
    assert code == 1  # written, but findings remain for a person to handle
    run = (tmp_path / "run.py").read_text()
    assert run.startswith("from fulmen import Trainer\nfrom fulmen.strategies import DDPStrategy\n"
                          "from lightning.pytorch.strategies import DeepSpeedStrategy\n")
    # `L` serves the Trainer side now; Fabric stays reachable through the `lightning` package.
    assert (tmp_path / "fabric_loop.py").read_text() == (
        "import fulmen as L, lightning\nfrom lightning.fabric import Fabric\n\n"
        'fabric = lightning.Fabric(accelerator="cpu")\ntrainer = L.Trainer(max_epochs=1)\n')
    assert "class_path: fulmen.callbacks.ModelCheckpoint" in (tmp_path / "configs/run.yaml").read_text()
    assert _findings(_port(capsys, tmp_path)[1])  # still reported after the rewrite


def test_names_come_from_fulmen_itself(tmp_path, capsys):
    """An import is checked against what fulmen has: present names port, an absent one is reported where fulmen's
    package exports it."""
    _write(tmp_path, {"a.py": """
        from lightning.pytorch.plugins.precision.amp import MixedPrecision
        from lightning.pytorch.callbacks import ModelCheckpoint, NotAThing
        import lightning.pytorch.strategies.deepspeed
        """})
    code, out, _ = _port(capsys, tmp_path / "a.py")
    assert code == 1
    findings = _findings(out)
    assert f"{tmp_path / 'a.py'}:1:53: [unsupported] `lightning.pytorch.plugins.precision.amp.MixedPrecision`: " \
           "fulmen has no `fulmen.plugins.precision.amp.MixedPrecision`. Fix: import it from " \
           "`fulmen.plugins.precision.MixedPrecision`." in findings
    assert any(":2:58: [unsupported] `lightning.pytorch.callbacks.NotAThing` has no fulmen twin" in f for f in findings)
    assert any(":3:8: [unsupported] `lightning.pytorch.strategies.deepspeed`: DeepSpeed" in f for f in findings)
    assert "+from fulmen.callbacks import ModelCheckpoint\n+from lightning.pytorch.callbacks import NotAThing\n" in out


def test_line_endings_and_python_forms(tmp_path, capsys):
    source = ("import os, lightning.pytorch.callbacks as cbs, pytorch_lightning\r\n"
              "from lightning import Fabric, Trainer  # both\r\n"
              "from lightning import pytorch as pl\r\n"
              "if True:\r\n"
              "    from pytorch_lightning.callbacks import ModelCheckpoint, XLAStatsMonitor\r\n"
              "t = pytorch_lightning.Trainer(accelerator='ddp')\r\n")
    (tmp_path / "forms.py").write_bytes(source.encode())
    code, out, _ = _port(capsys, "--write", tmp_path / "forms.py")
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


def test_hydra_config_targets_and_arguments(tmp_path, capsys):
    _write(tmp_path, {"conf/train.yaml": """
        trainer:
          _target_: pytorch_lightning.Trainer
          max_epochs: 3
          resume_from_checkpoint: last.ckpt
        callbacks:
          ckpt:
            _target_: "lightning.pytorch.callbacks.ModelCheckpoint"
            monitor: val_loss
        """})
    code, out, _ = _port(capsys, tmp_path)
    assert code == 1
    assert "-  _target_: pytorch_lightning.Trainer\n+  _target_: fulmen.Trainer\n" in out
    assert '-    _target_: "lightning.pytorch.callbacks.ModelCheckpoint"\n' \
           '+    _target_: "fulmen.callbacks.ModelCheckpoint"\n' in out
    assert _findings(out) == [f"{tmp_path / 'conf/train.yaml'}:4:3: [removed] `trainer: resume_from_checkpoint` was "
                              "removed in Lightning 2.0. Fix: pass `ckpt_path=...` to `trainer.fit(...)`."]


def test_correct_lightning_2_code_has_no_findings(tmp_path, capsys):
    """Hooks with their 2.x signatures, `dataloader_idx` on evaluation steps, constructors, and two classes of the
    same name (a module in one file, a callback in another) raise nothing."""
    _write(tmp_path, {
        "a.py": """
            import lightning.pytorch as pl


            class Probe(pl.LightningModule):
                def __init__(self, width, depth=2):
                    super().__init__()

                def validation_step(self, batch, batch_idx, dataloader_idx=0):
                    pass

                def on_train_batch_start(self, batch, batch_idx):
                    pass

                def on_train_epoch_end(self):
                    pass
            """,
        "b.py": """
            from lightning.pytorch import Callback, Trainer


            class Probe(Callback):
                def __init__(self, name):
                    self.name = name

                def on_train_start(self, trainer, pl_module):
                    pass

                def on_save_checkpoint(self, trainer, pl_module, checkpoint):
                    return super().on_save_checkpoint(trainer, pl_module, checkpoint)

            trainer = Trainer(accelerator="cpu", strategy="ddp_spawn", precision="bf16-mixed", devices=2)
            trainer.fit(None, train_dataloaders=None, ckpt_path=None)
            trainer.test(None, ckpt_path="best", weights_only=False)
            """})
    code, out, _ = _port(capsys, tmp_path)
    assert code == 1 and _findings(out) == []


def test_nothing_to_port_exits_zero(tmp_path, capsys):
    _write(tmp_path, {"plain.py": "import torch\n", "fulmen_already.py": "import fulmen as L\nL.Trainer\n",
                      "ci.yaml": "steps: [build]\n"})
    assert _port(capsys, tmp_path) == (0, "checked 3 files: 0 to port (run with --write to apply), 0 findings, "
                                          "0 errors\n", "")


def test_bad_paths_are_refused_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("lightning")
    code, out, err = _port(capsys, tmp_path / "missing", tmp_path / "notes.txt")
    assert (code, out) == (2, "")
    assert err == (f"error: {tmp_path / 'missing'}: no such file or directory\n"
                   f"error: {tmp_path / 'notes.txt'}: not a Python file or a YAML config (expected .py, .yaml or "
                   ".yml)\n")


def test_a_file_that_does_not_parse_is_an_error_and_the_others_are_still_ported(tmp_path, capsys):
    _write(tmp_path, {"broken.py": "import pytorch_lightning as pl\ndef f(:\n", "ok.py": "import pytorch_lightning\n"})
    code, out, _ = _port(capsys, tmp_path)
    assert code == 2
    assert f"{tmp_path / 'broken.py'}:2:7: [error] cannot parse the file: invalid syntax" in out
    assert "+import fulmen\n" in out


def test_write_through_a_symbolic_link_rewrites_its_target(tmp_path, capsys):
    (tmp_path / "real.py").write_text("import pytorch_lightning as pl\n")
    (tmp_path / "link.py").symlink_to(tmp_path / "real.py")
    assert _port(capsys, "--write", tmp_path / "link.py")[0] == 0
    assert (tmp_path / "link.py").is_symlink()
    assert (tmp_path / "real.py").read_text() == "import fulmen as pl\n"


def test_command_line(tmp_path):
    """Once through a fresh interpreter, as a user runs it."""
    _write(tmp_path, {"train.py": "import pytorch_lightning as pl\ntrainer = pl.Trainer(tpu_cores=8)\n"})
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
