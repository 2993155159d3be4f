"""Helpers for the logging tests: a logger that records its calls, modules that log from a chosen hook,
and a quiet CPU Trainer factory. Expected values in the tests were recorded from Lightning 2.6.
"""

import torch
from torch.nn import functional as F

import fulmen as L
from fulmen.loggers import Logger
from helpers.tiny import TinyModule, make_loader


class RecordingLogger(Logger):
    """Keeps every `log_metrics` call as `(step, {key: float})` and every hyperparameter dict."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.hparams = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, {key: float(value) for key, value in metrics.items()}))

    def log_hyperparams(self, params, *args, **kwargs):
        self.hparams.append(dict(params))

    def steps(self, key):
        """The steps at which `key` was logged, in call order."""
        return [step for step, metrics in self.calls if key in metrics]

    def values(self, key):
        return [metrics[key] for _, metrics in self.calls if key in metrics]


def module_logging_in(hook, log, base=TinyModule, **init):
    """An instance of `base` whose `hook` first calls `log(module)`, then does what `base` does there."""
    original = getattr(base, hook)

    def hooked(self, *args, **kwargs):
        log(self)
        return original(self, *args, **kwargs)

    module_class = type(f"LogsIn_{hook}", (base,), {hook: hooked})
    return module_class(**init)


class LossLoggingModule(TinyModule):
    """TinyModule that logs `train_loss` per step and `val_loss` per epoch; can save hyperparameters."""

    def __init__(self, lr=0.1, hidden=4, save_hparams=True, example_input=False):
        super().__init__(lr=lr)
        if save_hparams:
            self.save_hyperparameters("lr", "hidden")
        if example_input:
            self.example_input_array = torch.zeros(2, 32)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))


def log_trainer(root, **flags):
    """A CPU Trainer under `root`: no logger, progress bar, summary, checkpoints or sanity check, one epoch.

    Validation is off (`limit_val_batches=0`) unless the test passes a limit.
    """
    options = dict(default_root_dir=root, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, max_epochs=1,
                   limit_val_batches=0)
    options.update(flags)
    return L.Trainer(**options)


def fit_with(root, logger, module=None, epochs=2, train_batches=3, val_batches=2, every=2, **flags):
    """Fit `module` (a LossLoggingModule by default) with train and val data and `logger`; return the trainer."""
    module = LossLoggingModule() if module is None else module
    trainer = log_trainer(root, logger=logger, max_epochs=epochs, limit_train_batches=train_batches,
                          limit_val_batches=val_batches, log_every_n_steps=every, **flags)
    trainer.fit(module, make_loader(), make_loader(16))
    return trainer
