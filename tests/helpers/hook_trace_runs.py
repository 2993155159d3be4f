"""Runs traced with `Trainer(trace_hooks=...)` for the hook tracer and `expected_hooks` tests.

`TracedModule` defines the optional hooks `expected_hooks` assumes (prepare_data, configure_model, the
model_train hooks), its data has a chosen number of batches, and it can use a scheduler or manual optimization.
"""

import os

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.debug import HookTracer

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False,
             accelerator="cpu", devices=1)
# Hooks that receive `batch_idx` / `dataloader_idx` (the only places a recording of Lightning can see them).
WITH_BATCH_IDX = frozenset({
    "on_train_batch_start", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
    "training_step", "validation_step", "test_step", "predict_step", "optimizer_step", "optimizer_zero_grad"})
WITH_DATALOADER_IDX = WITH_BATCH_IDX - {"training_step", "optimizer_step", "optimizer_zero_grad"}


def _loader(batches, seed):
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.randn(batches * 2, 4, generator=generator)), batch_size=2)


class TracedModule(L.LightningModule):
    def __init__(self, train_batches=4, val_batches=2, test_batches=2, predict_batches=2, manual=False,
                 scheduler=None):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.counts = dict(train=train_batches, val=val_batches, test=test_batches, predict=predict_batches)
        self.automatic_optimization = not manual
        self.scheduler = scheduler

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).sum()
        if self.automatic_optimization:
            return loss
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return None

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return self.layer(batch[0]).sum()

    def test_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        if self.scheduler is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler}}

    def train_dataloader(self):
        return _loader(self.counts["train"], 0)

    def val_dataloader(self):
        counts = self.counts["val"]
        if isinstance(counts, list):
            return [_loader(count, 10 + index) for index, count in enumerate(counts)]
        return _loader(counts, 1)

    def test_dataloader(self):
        return _loader(self.counts["test"], 2)

    def predict_dataloader(self):
        return _loader(self.counts["predict"], 3)

    # The optional hooks `expected_hooks` assumes the module defines.
    def prepare_data(self):
        pass

    def configure_model(self):
        pass

    def on_validation_model_train(self):
        self.train()

    def on_test_model_train(self):
        self.train()


class Plain(L.Callback):
    """A callback overriding nothing: traced runs still call (and record) each of its hooks."""


class SaveAt(L.Callback):
    """Saves `path` in on_train_batch_end after `batches_done` batches of `epoch` (0: in on_train_epoch_end of the
    epoch before)."""

    def __init__(self, path, epoch, batches_done):
        self.path, self.epoch, self.batches_done = path, epoch, batches_done

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.batches_done and (trainer.current_epoch, batch_idx + 1) == (self.epoch, self.batches_done):
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.batches_done and trainer.current_epoch + 1 == self.epoch:
            trainer.save_checkpoint(self.path)


# expected_hooks arguments that are not Trainer flags, and how they reach the module.
_MODULE_ARGS = ("train_batches", "val_batches", "test_batches", "predict_batches")


def traced_run(tmp_path, stage, **flags):
    """Run `stage` with the `expected_hooks` arguments `flags`; return the tracer's records."""
    flags = dict(flags)
    module_kwargs = {key: flags.pop(key) for key in list(flags) if key in _MODULE_ARGS}
    module_kwargs["manual"] = not flags.pop("automatic_optimization", True)
    module_kwargs["scheduler"] = flags.pop("lr_scheduler_interval", None)
    callbacks = flags.pop("callbacks", 1)
    resume_from = flags.pop("resume_from", None)
    ckpt_path = None
    if resume_from is not None:
        ckpt_path = os.path.join(tmp_path, "resume.ckpt")
        first = L.Trainer(default_root_dir=tmp_path, callbacks=[SaveAt(ckpt_path, *resume_from)], **QUIET, **flags)
        first.fit(TracedModule(**module_kwargs))
        assert os.path.exists(ckpt_path)
    trainer = L.Trainer(default_root_dir=tmp_path, callbacks=[Plain() for _ in range(callbacks)],
                        trace_hooks=HookTracer(), **QUIET, **flags)
    getattr(trainer, stage)(TracedModule(**module_kwargs), **({"ckpt_path": ckpt_path} if ckpt_path else {}))
    return trainer.hook_tracer.records


def comparable(records):
    """Records without what only a real run knows (the run number, the owners' class names)."""
    return [{key: value for key, value in record.items() if key not in ("run", "owner_class")} for record in records]


def as_recorded_by_lightning(records):
    """Records in the golden's form: [owner, hook, stage, epoch, batch_idx, dataloader_idx], the indices only for
    the hooks that receive them."""
    return [[r["owner"], r["hook"], r["stage"], r["epoch"], r["batch_idx"] if r["hook"] in WITH_BATCH_IDX else None,
             r["dataloader_idx"] if r["hook"] in WITH_DATALOADER_IDX else None] for r in records]
