"""Framework-agnostic hook-order recorder.

``make_recorders(L)`` builds a LightningModule subclass and a Callback subclass
on top of whatever framework namespace ``L`` is passed in (it must expose
``LightningModule`` and ``Callback``; ``run_scenarios`` additionally needs
``Trainer``).  Every hook the framework invokes is appended, as a short
string, to a shared list so two frameworks can be compared call-for-call.

Recording conventions
---------------------
* Module hooks are recorded by bare name (``"on_train_start"``), callback
  hooks with a ``"Callback."`` prefix.
* ``setup``/``teardown`` carry ``(stage=...)``.
* Batch hooks carry ``(batch_idx=N)``; validation/test/predict batch hooks
  also carry ``dataloader_idx`` (the hook default 0 when the framework does
  not pass one).
* ``*_step`` methods carry ``(batch_idx=N)`` and add ``dataloader_idx=N``
  only when the framework actually passes that argument (i.e. this records
  whether the framework forwards ``dataloader_idx`` to the step).
* The three batch-transfer hooks carry ``(dataloader_idx=N)``.
"""

import torch
from torch.utils.data import DataLoader, Dataset

IN_FEATURES = 32
OUT_FEATURES = 2
BATCH_SIZE = 2
NUM_SAMPLES = 8  # -> 4 batches per loader
_NOT_GIVEN = object()


class RandomVectors(Dataset):
    """A fixed, in-memory set of random float vectors (deterministic)."""

    def __init__(self, length=NUM_SAMPLES, size=IN_FEATURES, seed=1234):
        gen = torch.Generator().manual_seed(seed)
        self.data = torch.randn(length, size, generator=gen)

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        return self.data[index]


def _plain(value):
    # Stage values may be str-Enums (e.g. ``TrainerFn.FITTING``); record the raw value.
    return getattr(value, "value", value)


def _fmt(name, **kwargs):
    if not kwargs:
        return name
    inner = ", ".join(f"{k}={_plain(v)}" for k, v in kwargs.items())
    return f"{name}({inner})"


def make_recorders(L):
    """Return ``(RecordingModule, RecordingCallback)`` built on namespace ``L``."""

    class RecordingCallback(L.Callback):
        def __init__(self, calls):
            super().__init__()
            self.calls = calls

        def _rec(self, name, **kwargs):
            self.calls.append("Callback." + _fmt(name, **kwargs))

        # -- setup / teardown ---------------------------------------------
        def setup(self, trainer, pl_module, stage):
            self._rec("setup", stage=stage)
            return super().setup(trainer, pl_module, stage)

        def teardown(self, trainer, pl_module, stage):
            self._rec("teardown", stage=stage)
            return super().teardown(trainer, pl_module, stage)

        # -- fit / sanity ---------------------------------------------------
        def on_fit_start(self, trainer, pl_module):
            self._rec("on_fit_start")
            return super().on_fit_start(trainer, pl_module)

        def on_fit_end(self, trainer, pl_module):
            self._rec("on_fit_end")
            return super().on_fit_end(trainer, pl_module)

        def on_sanity_check_start(self, trainer, pl_module):
            self._rec("on_sanity_check_start")
            return super().on_sanity_check_start(trainer, pl_module)

        def on_sanity_check_end(self, trainer, pl_module):
            self._rec("on_sanity_check_end")
            return super().on_sanity_check_end(trainer, pl_module)

        # -- train ----------------------------------------------------------
        def on_train_start(self, trainer, pl_module):
            self._rec("on_train_start")
            return super().on_train_start(trainer, pl_module)

        def on_train_end(self, trainer, pl_module):
            self._rec("on_train_end")
            return super().on_train_end(trainer, pl_module)

        def on_train_epoch_start(self, trainer, pl_module):
            self._rec("on_train_epoch_start")
            return super().on_train_epoch_start(trainer, pl_module)

        def on_train_epoch_end(self, trainer, pl_module):
            self._rec("on_train_epoch_end")
            return super().on_train_epoch_end(trainer, pl_module)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._rec("on_train_batch_start", batch_idx=batch_idx)
            return super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._rec("on_train_batch_end", batch_idx=batch_idx)
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

        # -- validation -----------------------------------------------------
        def on_validation_start(self, trainer, pl_module):
            self._rec("on_validation_start")
            return super().on_validation_start(trainer, pl_module)

        def on_validation_end(self, trainer, pl_module):
            self._rec("on_validation_end")
            return super().on_validation_end(trainer, pl_module)

        def on_validation_epoch_start(self, trainer, pl_module):
            self._rec("on_validation_epoch_start")
            return super().on_validation_epoch_start(trainer, pl_module)

        def on_validation_epoch_end(self, trainer, pl_module):
            self._rec("on_validation_epoch_end")
            return super().on_validation_epoch_end(trainer, pl_module)

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self._rec("on_validation_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self._rec("on_validation_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

        # -- test -----------------------------------------------------------
        def on_test_start(self, trainer, pl_module):
            self._rec("on_test_start")
            return super().on_test_start(trainer, pl_module)

        def on_test_end(self, trainer, pl_module):
            self._rec("on_test_end")
            return super().on_test_end(trainer, pl_module)

        def on_test_epoch_start(self, trainer, pl_module):
            self._rec("on_test_epoch_start")
            return super().on_test_epoch_start(trainer, pl_module)

        def on_test_epoch_end(self, trainer, pl_module):
            self._rec("on_test_epoch_end")
            return super().on_test_epoch_end(trainer, pl_module)

        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self._rec("on_test_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_test_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self._rec("on_test_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

        # -- predict --------------------------------------------------------
        def on_predict_start(self, trainer, pl_module):
            self._rec("on_predict_start")
            return super().on_predict_start(trainer, pl_module)

        def on_predict_end(self, trainer, pl_module):
            self._rec("on_predict_end")
            return super().on_predict_end(trainer, pl_module)

        def on_predict_epoch_start(self, trainer, pl_module):
            self._rec("on_predict_epoch_start")
            return super().on_predict_epoch_start(trainer, pl_module)

        def on_predict_epoch_end(self, trainer, pl_module):
            self._rec("on_predict_epoch_end")
            return super().on_predict_epoch_end(trainer, pl_module)

        def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self._rec("on_predict_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self._rec("on_predict_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

        # -- optimisation ---------------------------------------------------
        def on_before_backward(self, trainer, pl_module, loss):
            self._rec("on_before_backward")
            return super().on_before_backward(trainer, pl_module, loss)

        def on_after_backward(self, trainer, pl_module):
            self._rec("on_after_backward")
            return super().on_after_backward(trainer, pl_module)

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self._rec("on_before_optimizer_step")
            return super().on_before_optimizer_step(trainer, pl_module, optimizer)

        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            self._rec("on_before_zero_grad")
            return super().on_before_zero_grad(trainer, pl_module, optimizer)

        # -- checkpoint / state / errors -------------------------------------
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            self._rec("on_save_checkpoint")
            return super().on_save_checkpoint(trainer, pl_module, checkpoint)

        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            self._rec("on_load_checkpoint")
            return super().on_load_checkpoint(trainer, pl_module, checkpoint)

        def on_exception(self, trainer, pl_module, exception):
            self._rec("on_exception")
            return super().on_exception(trainer, pl_module, exception)

        def state_dict(self):
            self._rec("state_dict")
            return super().state_dict()

        def load_state_dict(self, state_dict):
            self._rec("load_state_dict")
            return super().load_state_dict(state_dict)

    class RecordingModule(L.LightningModule):
        def __init__(self, calls, num_val_loaders=1, with_scheduler=False):
            super().__init__()
            self.calls = calls
            self.num_val_loaders = num_val_loaders
            self.with_scheduler = with_scheduler
            self.layer = torch.nn.Linear(IN_FEATURES, OUT_FEATURES)

        def _rec(self, name, **kwargs):
            self.calls.append(_fmt(name, **kwargs))

        @staticmethod
        def _step_kwargs(batch_idx, dataloader_idx):
            kw = {"batch_idx": batch_idx}
            if dataloader_idx is not _NOT_GIVEN:
                kw["dataloader_idx"] = dataloader_idx
            return kw

        # -- model / steps ------------------------------------------------------
        def forward(self, x):
            self._rec("forward")
            return self.layer(x)

        def _loss(self, batch):
            return self(batch).sum()

        def training_step(self, batch, batch_idx):
            self._rec("training_step", batch_idx=batch_idx)
            return self._loss(batch)

        def validation_step(self, batch, batch_idx, dataloader_idx=_NOT_GIVEN):
            self._rec("validation_step", **self._step_kwargs(batch_idx, dataloader_idx))
            return self._loss(batch)

        def test_step(self, batch, batch_idx, dataloader_idx=_NOT_GIVEN):
            self._rec("test_step", **self._step_kwargs(batch_idx, dataloader_idx))
            return self._loss(batch)

        def predict_step(self, batch, batch_idx, dataloader_idx=_NOT_GIVEN):
            self._rec("predict_step", **self._step_kwargs(batch_idx, dataloader_idx))
            return self(batch)

        def configure_optimizers(self):
            self._rec("configure_optimizers")
            opt = torch.optim.SGD(self.layer.parameters(), lr=0.1)
            if self.with_scheduler:
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
                return {"optimizer": opt, "lr_scheduler": sched}
            return opt

        def configure_callbacks(self):
            self._rec("configure_callbacks")
            return super().configure_callbacks()

        def configure_model(self):
            self._rec("configure_model")
            return super().configure_model()

        # -- data hooks ---------------------------------------------------------
        def prepare_data(self):
            self._rec("prepare_data")
            return super().prepare_data()

        def setup(self, stage):
            self._rec("setup", stage=stage)
            return super().setup(stage)

        def teardown(self, stage):
            self._rec("teardown", stage=stage)
            return super().teardown(stage)

        @staticmethod
        def _loader(seed):
            return DataLoader(RandomVectors(seed=seed), batch_size=BATCH_SIZE)

        def train_dataloader(self):
            self._rec("train_dataloader")
            return self._loader(0)

        def val_dataloader(self):
            self._rec("val_dataloader")
            if self.num_val_loaders == 1:
                return self._loader(1)
            return [self._loader(10 + i) for i in range(self.num_val_loaders)]

        def test_dataloader(self):
            self._rec("test_dataloader")
            return self._loader(2)

        def predict_dataloader(self):
            self._rec("predict_dataloader")
            return self._loader(3)

        def on_before_batch_transfer(self, batch, dataloader_idx):
            self._rec("on_before_batch_transfer", dataloader_idx=dataloader_idx)
            return super().on_before_batch_transfer(batch, dataloader_idx)

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            self._rec("transfer_batch_to_device", dataloader_idx=dataloader_idx)
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            self._rec("on_after_batch_transfer", dataloader_idx=dataloader_idx)
            return super().on_after_batch_transfer(batch, dataloader_idx)

        # -- optimisation hooks -----------------------------------------------
        def backward(self, loss, *args, **kwargs):
            self._rec("backward")
            return super().backward(loss, *args, **kwargs)

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            self._rec("optimizer_step", epoch=epoch, batch_idx=batch_idx)
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            self._rec("optimizer_zero_grad", epoch=epoch, batch_idx=batch_idx)
            return super().optimizer_zero_grad(epoch, batch_idx, optimizer)

        def lr_scheduler_step(self, scheduler, metric):
            self._rec("lr_scheduler_step")
            return super().lr_scheduler_step(scheduler, metric)

        def on_before_backward(self, loss):
            self._rec("on_before_backward")
            return super().on_before_backward(loss)

        def on_after_backward(self):
            self._rec("on_after_backward")
            return super().on_after_backward()

        def on_before_optimizer_step(self, optimizer):
            self._rec("on_before_optimizer_step")
            return super().on_before_optimizer_step(optimizer)

        def on_before_zero_grad(self, optimizer):
            self._rec("on_before_zero_grad")
            return super().on_before_zero_grad(optimizer)

        # -- fit / train ------------------------------------------------------
        def on_fit_start(self):
            self._rec("on_fit_start")
            return super().on_fit_start()

        def on_fit_end(self):
            self._rec("on_fit_end")
            return super().on_fit_end()

        def on_train_start(self):
            self._rec("on_train_start")
            return super().on_train_start()

        def on_train_end(self):
            self._rec("on_train_end")
            return super().on_train_end()

        def on_train_epoch_start(self):
            self._rec("on_train_epoch_start")
            return super().on_train_epoch_start()

        def on_train_epoch_end(self):
            self._rec("on_train_epoch_end")
            return super().on_train_epoch_end()

        def on_train_batch_start(self, batch, batch_idx):
            self._rec("on_train_batch_start", batch_idx=batch_idx)
            return super().on_train_batch_start(batch, batch_idx)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self._rec("on_train_batch_end", batch_idx=batch_idx)
            return super().on_train_batch_end(outputs, batch, batch_idx)

        # -- validation -----------------------------------------------------
        def on_validation_start(self):
            self._rec("on_validation_start")
            return super().on_validation_start()

        def on_validation_end(self):
            self._rec("on_validation_end")
            return super().on_validation_end()

        def on_validation_epoch_start(self):
            self._rec("on_validation_epoch_start")
            return super().on_validation_epoch_start()

        def on_validation_epoch_end(self):
            self._rec("on_validation_epoch_end")
            return super().on_validation_epoch_end()

        def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
            self._rec("on_validation_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_validation_batch_start(batch, batch_idx, dataloader_idx)

        def on_validation_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            self._rec("on_validation_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_validation_batch_end(outputs, batch, batch_idx, dataloader_idx)

        def on_validation_model_eval(self):
            self._rec("on_validation_model_eval")
            return super().on_validation_model_eval()

        def on_validation_model_train(self):
            self._rec("on_validation_model_train")
            return super().on_validation_model_train()

        def on_validation_model_zero_grad(self):
            self._rec("on_validation_model_zero_grad")
            return super().on_validation_model_zero_grad()

        # -- test -----------------------------------------------------------
        def on_test_start(self):
            self._rec("on_test_start")
            return super().on_test_start()

        def on_test_end(self):
            self._rec("on_test_end")
            return super().on_test_end()

        def on_test_epoch_start(self):
            self._rec("on_test_epoch_start")
            return super().on_test_epoch_start()

        def on_test_epoch_end(self):
            self._rec("on_test_epoch_end")
            return super().on_test_epoch_end()

        def on_test_batch_start(self, batch, batch_idx, dataloader_idx=0):
            self._rec("on_test_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_test_batch_start(batch, batch_idx, dataloader_idx)

        def on_test_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            self._rec("on_test_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_test_batch_end(outputs, batch, batch_idx, dataloader_idx)

        def on_test_model_eval(self):
            self._rec("on_test_model_eval")
            return super().on_test_model_eval()

        def on_test_model_train(self):
            self._rec("on_test_model_train")
            return super().on_test_model_train()

        # -- predict --------------------------------------------------------
        def on_predict_start(self):
            self._rec("on_predict_start")
            return super().on_predict_start()

        def on_predict_end(self):
            self._rec("on_predict_end")
            return super().on_predict_end()

        def on_predict_epoch_start(self):
            self._rec("on_predict_epoch_start")
            return super().on_predict_epoch_start()

        def on_predict_epoch_end(self):
            self._rec("on_predict_epoch_end")
            return super().on_predict_epoch_end()

        def on_predict_batch_start(self, batch, batch_idx, dataloader_idx=0):
            self._rec("on_predict_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_predict_batch_start(batch, batch_idx, dataloader_idx)

        def on_predict_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            self._rec("on_predict_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_predict_batch_end(outputs, batch, batch_idx, dataloader_idx)

        def on_predict_model_eval(self):
            self._rec("on_predict_model_eval")
            return super().on_predict_model_eval()

        # -- checkpoint -----------------------------------------------------
        def on_save_checkpoint(self, checkpoint):
            self._rec("on_save_checkpoint")
            return super().on_save_checkpoint(checkpoint)

        def on_load_checkpoint(self, checkpoint):
            self._rec("on_load_checkpoint")
            return super().on_load_checkpoint(checkpoint)

    return RecordingModule, RecordingCallback


BASE_TRAINER_KWARGS = dict(
    enable_progress_bar=False,
    enable_model_summary=False,
    logger=False,
    enable_checkpointing=False,
    accelerator="cpu",
    devices=1,
)

# name -> (trainer entry point, module kwargs, extra Trainer kwargs)
SCENARIOS = {
    "fit": ("fit", {}, dict(max_epochs=2, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1)),
    "fit_no_val": ("fit", {}, dict(max_epochs=1, limit_train_batches=2, limit_val_batches=0)),
    "fit_max_steps_mid_epoch": (
        "fit",
        {},
        dict(max_steps=3, limit_train_batches=4, limit_val_batches=1, num_sanity_val_steps=0, max_epochs=5),
    ),
    "validate": ("validate", {}, dict(limit_val_batches=2)),
    "test": ("test", {}, dict(limit_test_batches=2)),
    "predict": ("predict", {}, dict(limit_predict_batches=2)),
    "fit_two_val_loaders": (
        "fit",
        {"num_val_loaders": 2},
        dict(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0),
    ),
    "fit_lr_scheduler": (
        "fit",
        {"with_scheduler": True},
        dict(max_epochs=2, limit_train_batches=2, limit_val_batches=0),
    ),
}


def run_scenario(L, name, root_dir):
    """Run one named scenario on fresh objects and return its call list."""
    entry, module_kwargs, trainer_kwargs = SCENARIOS[name]
    RecordingModule, RecordingCallback = make_recorders(L)
    calls = []
    model = RecordingModule(calls, **module_kwargs)
    callback = RecordingCallback(calls)
    trainer = L.Trainer(
        default_root_dir=str(root_dir), callbacks=[callback], **BASE_TRAINER_KWARGS, **trainer_kwargs
    )
    getattr(trainer, entry)(model)
    return calls


def run_scenarios(L, root_dir, names=None):
    """Run every scenario (or just ``names``) and return ``{name: calls}``."""
    return {name: run_scenario(L, name, root_dir) for name in (names or SCENARIOS)}
