"""Tiny model, data and a small callback shared by the trainer and loop tests.

`TinyModule` is a Linear(32, 2) classifier trained with SGD (lr 0.1). It counts how often each step
method ran in `self.calls` and defines no dataloader hooks: tests pass loaders to fit/validate/...
"""

from collections import Counter

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

import fulmen as L

IN_FEATURES = 32
NUM_CLASSES = 2


class RandomDataset(Dataset):
    """`num_samples` fixed random vectors of `size` floats; items are `(x, y)`, or `x` alone with `targets=False`."""

    def __init__(self, num_samples=64, size=IN_FEATURES, targets=True, seed=1234):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(num_samples, size, generator=gen)
        self.y = torch.randint(0, NUM_CLASSES, (num_samples,), generator=gen)
        self.targets = targets

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return (self.x[index], self.y[index]) if self.targets else self.x[index]


def make_loader(n=64, batch_size=8, shuffle=False, targets=True, seed=1234):
    """A DataLoader over `RandomDataset(n)`: `n / batch_size` batches."""
    return DataLoader(RandomDataset(n, targets=targets, seed=seed), batch_size=batch_size, shuffle=shuffle)


class TinyModule(L.LightningModule):
    """Linear(32, 2) with cross-entropy (or MSE on one-hot targets), SGD lr 0.1.

    Args:
        lr: the SGD learning rate.
        loss: "ce" (cross-entropy) or "mse".
        log_val: log `val_loss` (and `test_loss`) on epoch, so validate/test return something.
    """

    def __init__(self, lr=0.1, loss="ce", log_val=False):
        super().__init__()
        self.layer = nn.Linear(IN_FEATURES, NUM_CLASSES)
        self.lr = lr
        self.loss_name = loss
        self.log_val = log_val
        self.calls = Counter()

    def forward(self, x):
        return self.layer(x)

    def loss(self, batch):
        x, y = batch
        logits = self(x)
        if self.loss_name == "mse":
            return F.mse_loss(logits, F.one_hot(y, NUM_CLASSES).float())
        return F.cross_entropy(logits, y)

    def training_step(self, batch, batch_idx):
        self.calls["training_step"] += 1
        return self.loss(batch)

    def validation_step(self, batch, batch_idx):
        self.calls["validation_step"] += 1
        loss = self.loss(batch)
        if self.log_val:
            self.log("val_loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        self.calls["test_step"] += 1
        loss = self.loss(batch)
        if self.log_val:
            self.log("test_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class WithDataHooks(TinyModule):
    """TinyModule whose dataloader hooks serve every stage (16 samples, 2 batches each; predict without targets)."""

    def train_dataloader(self):
        return make_loader(16)

    def val_dataloader(self):
        return make_loader(16)

    def test_dataloader(self):
        return make_loader(16)

    def predict_dataloader(self):
        return make_loader(16, targets=False)

    def predict_step(self, batch, batch_idx):
        return self(batch)


def _plain(value):
    """A stage may arrive as a str-Enum; keep its value so f-strings read "fit" on every Python."""
    return getattr(value, "value", value)


class RecordingCallback(L.Callback):
    """Records `(hook, trainer.current_epoch, trainer.global_step)` for the coarse hooks, and exceptions."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.exceptions = []

    def _record(self, name, trainer):
        self.events.append((name, trainer.current_epoch, trainer.global_step))

    def names(self):
        return [name for name, _, _ in self.events]

    def count(self, name):
        return self.names().count(name)

    def setup(self, trainer, pl_module, stage):
        self._record(f"setup:{_plain(stage)}", trainer)

    def teardown(self, trainer, pl_module, stage):
        self._record(f"teardown:{_plain(stage)}", trainer)

    def on_sanity_check_start(self, trainer, pl_module):
        self._record("on_sanity_check_start", trainer)

    def on_train_epoch_start(self, trainer, pl_module):
        self._record("on_train_epoch_start", trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._record("on_train_epoch_end", trainer)

    def on_validation_start(self, trainer, pl_module):
        self._record("on_validation_start", trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record("on_train_batch_end", trainer)

    def on_exception(self, trainer, pl_module, exception):
        self.exceptions.append(exception)


def quiet_trainer(root, **flags):
    """A Trainer writing under `root` with no progress bar, summary, logger or checkpointing unless asked."""
    callbacks = flags.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    # A ModelCheckpoint among the callbacks asks for checkpointing (Lightning refuses it with enable_checkpointing=False).
    asked = any(getattr(callback, "_is_checkpoint", False) for callback in callbacks)
    defaults = dict(default_root_dir=root, enable_progress_bar=False, enable_model_summary=False, logger=False,
                    enable_checkpointing=asked)
    defaults.update(flags)
    return L.Trainer(**defaults)
