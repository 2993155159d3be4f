"""Fixture projects and helpers for the `python -m fulmen port` tests (tests/debug/test_port*.py)."""

import textwrap

from fulmen.__main__ import main


def write_project(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def snapshot(root):
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def run_port(capsys, *args):
    """Run `python -m fulmen port ARGS` in-process: (exit status, stdout, stderr)."""
    code = main(["port", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def findings_of(out):
    """The report lines (`path:line:col: [tag] message`) of a run's output."""
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
