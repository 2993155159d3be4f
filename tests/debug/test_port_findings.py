"""`python -m fulmen port`'s report: each use fulmen does not support, each API Lightning 2.0 removed (with what to
write instead) and each difference, as `path:line:col: [tag] message`, checked against fulmen itself."""

from helpers.port_projects import LEGACY, findings_of, run_port, write_project

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
    write_project(tmp_path, LEGACY)
    code, out, _ = run_port(capsys, tmp_path)
    assert code == 1
    findings = findings_of(out)
    assert len(findings) == len(LEGACY_FINDINGS), "\n".join(findings)
    for line, (position, tag, phrase) in zip(findings, LEGACY_FINDINGS):
        assert line.startswith(f"{tmp_path / position}: [{tag}] "), line
        assert phrase in line, line
    assert out.endswith(f"checked 6 files: 5 to port (run with --write to apply), {len(findings)} findings, "
                        "0 errors\n")


def test_unsupported_names_are_kept_on_lightning_not_rewritten_into_broken_imports(tmp_path, capsys):
    write_project(tmp_path, LEGACY)
    code, out, _ = run_port(capsys, "--write", tmp_path)
    assert code == 1  # written, but findings remain for a person to handle
    run = (tmp_path / "run.py").read_text()
    assert run.startswith("from fulmen import Trainer\nfrom fulmen.strategies import DDPStrategy\n"
                          "from lightning.pytorch.strategies import DeepSpeedStrategy\n")
    # `L` serves the Trainer side now; Fabric stays reachable through the `lightning` package.
    assert (tmp_path / "fabric_loop.py").read_text() == (
        "import fulmen as L, lightning\nfrom lightning.fabric import Fabric\n\n"
        'fabric = lightning.Fabric(accelerator="cpu")\ntrainer = L.Trainer(max_epochs=1)\n')
    assert "class_path: fulmen.callbacks.ModelCheckpoint" in (tmp_path / "configs/run.yaml").read_text()
    assert findings_of(run_port(capsys, tmp_path)[1])  # still reported after the rewrite


def test_names_come_from_fulmen_itself(tmp_path, capsys):
    """An import is checked against what fulmen has: present names port, an absent one is reported where fulmen's
    package exports it."""
    write_project(tmp_path, {"a.py": """
        from lightning.pytorch.plugins.precision.amp import MixedPrecision
        from lightning.pytorch.callbacks import ModelCheckpoint, NotAThing
        import lightning.pytorch.strategies.deepspeed
        """})
    code, out, _ = run_port(capsys, tmp_path / "a.py")
    assert code == 1
    findings = findings_of(out)
    assert f"{tmp_path / 'a.py'}:1:53: [unsupported] `lightning.pytorch.plugins.precision.amp.MixedPrecision`: " \
           "fulmen has no `fulmen.plugins.precision.amp.MixedPrecision`. Fix: import it from " \
           "`fulmen.plugins.precision.MixedPrecision`." in findings
    assert any(":2:58: [unsupported] `lightning.pytorch.callbacks.NotAThing` has no fulmen twin" in f for f in findings)
    assert any(":3:8: [unsupported] `lightning.pytorch.strategies.deepspeed`: DeepSpeed" in f for f in findings)
    assert "+from fulmen.callbacks import ModelCheckpoint\n+from lightning.pytorch.callbacks import NotAThing\n" in out


def test_hydra_config_targets_and_arguments(tmp_path, capsys):
    write_project(tmp_path, {"conf/train.yaml": """
        trainer:
          _target_: pytorch_lightning.Trainer
          max_epochs: 3
          resume_from_checkpoint: last.ckpt
        callbacks:
          ckpt:
            _target_: "lightning.pytorch.callbacks.ModelCheckpoint"
            monitor: val_loss
        """})
    code, out, _ = run_port(capsys, tmp_path)
    assert code == 1
    assert "-  _target_: pytorch_lightning.Trainer\n+  _target_: fulmen.Trainer\n" in out
    assert '-    _target_: "lightning.pytorch.callbacks.ModelCheckpoint"\n' \
           '+    _target_: "fulmen.callbacks.ModelCheckpoint"\n' in out
    assert findings_of(out) == [f"{tmp_path / 'conf/train.yaml'}:4:3: [removed] `trainer: resume_from_checkpoint` was "
                              "removed in Lightning 2.0. Fix: pass `ckpt_path=...` to `trainer.fit(...)`."]


def test_correct_lightning_2_code_has_nofindings_of(tmp_path, capsys):
    """Hooks with their 2.x signatures, `dataloader_idx` on evaluation steps, constructors, and two classes of the
    same name (a module in one file, a callback in another) raise nothing."""
    write_project(tmp_path, {
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
    code, out, _ = run_port(capsys, tmp_path)
    assert code == 1 and findings_of(out) == []
