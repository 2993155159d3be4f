"""Models, data and Trainer settings shared by the tuner tests, and the signature probes of
`LearningRateFinder` / `BatchSizeFinder` (one per constructor parameter).

The setups are the ones the recorded Lightning 2.6.6 values in tests/tuner/ came from: a linear regression on
`regression_data`, SGD (momentum 0.9) or Adam, seeded with `torch.manual_seed(0)` before the model is built.
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.callbacks import BatchSizeFinder, LearningRateFinder

OOM_MESSAGE = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes."


def regression_data(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=gen)
    return TensorDataset(x, y)


class RegressionModel(L.LightningModule):
    """Linear(4, 1) with MSE; `lr`, `batch_size` and the dataset size `n` are attributes the tuner may read.
    `requests` records `(stage, batch_size)` for each dataloader request; `steps` counts training steps."""

    def __init__(self, lr=1e-3, opt="sgd", batch_size=8, n=64):
        super().__init__()
        self.lr, self.opt, self.batch_size, self.n = lr, opt, batch_size, n
        self.layer = torch.nn.Linear(4, 1)
        self.requests = []
        self.steps = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.steps.append(x.shape[0])
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        lr = getattr(self, "lr", 1e-3)
        if self.opt == "adam":
            return torch.optim.Adam(self.parameters(), lr=lr)
        return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

    def _size(self):
        return self.batch_size

    def train_dataloader(self):
        self.requests.append(("train", self._size()))
        return DataLoader(regression_data(self.n), batch_size=self._size(), shuffle=True)

    def val_dataloader(self):
        self.requests.append(("val", self._size()))
        return DataLoader(regression_data(32, 1), batch_size=self._size())


class OOMModel(RegressionModel):
    """Raises the CPU allocator's out-of-memory RuntimeError for batches larger than `limit`."""

    limit = 40

    def training_step(self, batch, batch_idx):
        if batch[0].shape[0] > self.limit:
            raise RuntimeError(OOM_MESSAGE)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if batch[0].shape[0] > self.limit:
            raise RuntimeError(OOM_MESSAGE)
        return super().validation_step(batch, batch_idx)


class HparamsOOMModel(OOMModel):
    """Keeps the batch size only in `hparams` (no attribute)."""

    def __init__(self, batch_size=2, n=1000):
        super().__init__(n=n)
        del self.batch_size
        self.save_hyperparameters("batch_size")

    def _size(self):
        return self.hparams.batch_size


class SizedDataModule(L.LightningDataModule):
    """Keeps the batch size; 1000 training samples."""

    def __init__(self, batch_size=2):
        super().__init__()
        self.batch_size = batch_size
        self.requests = []

    def train_dataloader(self):
        self.requests.append(("train", self.batch_size))
        return DataLoader(regression_data(1000), batch_size=self.batch_size)

    def val_dataloader(self):
        self.requests.append(("val", self.batch_size))
        return DataLoader(regression_data(32, 1), batch_size=self.batch_size)


def make_trainer(root, **flags):
    args = dict(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False, default_root_dir=root, accelerator="cpu", devices=1)
    args.update(flags)
    return L.Trainer(**args)


def fit_with(root, callback, model=None, **flags):
    torch.manual_seed(0)
    model = RegressionModel() if model is None else model
    make_trainer(root, **{"max_steps": 1, **flags}, callbacks=[callback]).fit(model)
    return model, callback


# -- LearningRateFinder ---------------------------------------------------------------------------


def _lr_results(root, **kwargs):
    _, callback = fit_with(root, LearningRateFinder(**{"num_training_steps": 5, **kwargs}))
    return callback.optimal_lr.results


def _probe_mode(root):
    linear = _lr_results(root, mode="linear", min_lr=0.01, max_lr=0.02)["lr"]
    try:
        LearningRateFinder(mode="cosine")
    except ValueError as error:
        return abs(linear[1] - (0.01 + 2 / 5 * 0.01)) < 1e-12 and "mode" in str(error)
    return False


def _probe_attr_name(root):
    model = RegressionModel()
    model.my_lr = 1.0
    fit_with(root, LearningRateFinder(num_training_steps=15, attr_name="my_lr", max_lr=1e-3), model)
    try:
        fit_with(root, LearningRateFinder(attr_name="missing"))
    except AttributeError as error:
        return model.my_lr != 1.0 and model.lr == 1e-3 and "missing" in str(error)
    return False


LEARNING_RATE_FINDER = {
    "min_lr": lambda root: _lr_results(root, min_lr=1e-5)["lr"][0] == 1e-5,
    "max_lr": lambda root: abs(_lr_results(root, max_lr=1e-3, early_stop_threshold=None)["lr"][-1] - 1e-3) < 1e-15,
    "num_training_steps": lambda root: len(_lr_results(root, num_training_steps=7)["lr"]) == 7,
    "mode": _probe_mode,
    "early_stop_threshold": lambda root: (
        len(_lr_results(root, num_training_steps=100, max_lr=100.0)["lr"]) < 100
        and len(_lr_results(root, num_training_steps=100, max_lr=100.0, early_stop_threshold=None)["lr"]) == 100),
    "update_attr": lambda root: (
        fit_with(root, LearningRateFinder(num_training_steps=15, update_attr=False))[0].lr == 1e-3
        and fit_with(root, LearningRateFinder(num_training_steps=15))[0].lr != 1e-3),
    "attr_name": _probe_attr_name,
}


# -- BatchSizeFinder ------------------------------------------------------------------------------


def _found(root, **kwargs):
    model = OOMModel(n=1000)
    _, callback = fit_with(root, BatchSizeFinder(**kwargs), model)
    return callback.optimal_batch_size, model


def _probe_bs_mode(root):
    try:
        BatchSizeFinder(mode="linear")
    except ValueError:
        return _found(root)[0] == 32 and _found(root, mode="binsearch")[0] == 38
    return False


def _probe_batch_arg_name(root):
    model = OOMModel(n=1000)
    model.bsz = 2
    model._size = lambda: model.bsz
    fit_with(root, BatchSizeFinder(batch_arg_name="bsz"), model)
    try:
        _found(root, batch_arg_name="missing")
    except L.utilities.exceptions.MisconfigurationException as error:
        return model.bsz == 32 and model.batch_size == 8 and "missing" in str(error)
    return False


def _probe_margin(root):
    try:
        BatchSizeFinder(margin=1.0)
    except ValueError:
        return _found(root, mode="binsearch", margin=0.0)[0] == 40 and _found(root, mode="binsearch",
                                                                              margin=0.5)[0] == 20
    return False


BATCH_SIZE_FINDER = {
    "mode": _probe_bs_mode,
    "steps_per_trial": lambda root: _found(root, steps_per_trial=2)[1].steps[:4] == [2, 2, 4, 4],
    "init_val": lambda root: _found(root, init_val=5)[1].requests[0] == ("train", 5),
    "max_trials": lambda root: _found(root, max_trials=3)[0] == 8,
    "batch_arg_name": _probe_batch_arg_name,
    "margin": _probe_margin,
    "max_val": lambda root: _found(root, max_val=16)[0] == 16,
}
