"""Framework-agnostic recorder of what ``self.log`` / ``self.log_dict`` produce.

Everything is built on the framework namespace ``L`` passed in (it must expose
``LightningModule``, ``Trainer`` and ``loggers.Logger``), so the same scenarios
can run against two frameworks and their results be compared.

``run_logging_scenario(L, name, root_dir)`` returns a JSON-able dict:

* ``logger_calls``: every call a :func:`make_recording_logger` logger received,
  in order (``log_metrics`` / ``log_hyperparams`` / ``log_graph`` / ``finalize``;
  ``save`` is ignored).
* ``callback_metrics``, ``logged_metrics``, ``progress_bar_metrics``: the
  trainer's dicts after the run, ``{key: round(float(value), 6)}`` sorted by key.
* ``returned`` (scenarios ending in validate/test only): the list
  ``validate()`` / ``test()`` returned, rounded the same way.

A spec's ``entry`` is one Trainer method name or a tuple of them, run in
order on the same Trainer and module.

Data and model are deterministic: a ``Linear(4, 1)`` whose weights come from a
seeded ``torch.Generator``, regression data from another generator, SGD lr 0.1.
Train loader: 10 samples, batch size 4 -> batches of 4, 4, 2.  Validation /
test loader: 6 samples, batch size 4 -> 4, 2.  Second validation loader:
3 samples, batch size 2 -> 2, 1.  Most logged values are constants derived from
``batch_idx`` so that (batch-size weighted) epoch reductions are easy to check.
"""

from argparse import Namespace
from collections.abc import Mapping

import torch
from torch.utils.data import DataLoader, TensorDataset

IN_FEATURES = 4
LR = 0.1
ROUND = 6

# (num_samples, batch_size, seed)
TRAIN_DATA = (10, 4, 11)
VAL_DATA = (6, 4, 22)
VAL2_DATA = (3, 2, 33)
TEST_DATA = (6, 4, 44)
WEIGHT_SEED = 1234


def _r(value):
    return round(float(value), ROUND)


def _rounded(metrics):
    return {k: _r(metrics[k]) for k in sorted(metrics)}


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _r(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(value[k]) for k in sorted(value, key=str)}
    return repr(value)


def _params_dict(params):
    if isinstance(params, Namespace):
        params = vars(params)
    if isinstance(params, Mapping):
        return {str(k): _jsonable(params[k]) for k in sorted(params, key=str)}
    return _jsonable(params)


def make_recording_logger(L):
    """Return a ``RecordingLogger`` class built on ``L.loggers.Logger``."""

    class RecordingLogger(L.loggers.Logger):
        def __init__(self):
            super().__init__()
            self.calls = []

        @property
        def name(self):
            return "rec"

        @property
        def version(self):
            return 0

        @property
        def save_dir(self):
            return None

        @property
        def log_dir(self):
            return None

        @property
        def root_dir(self):
            return None

        def log_metrics(self, metrics, step=None):
            self.calls.append({"call": "log_metrics", "step": step, "metrics": _rounded(metrics)})

        def log_hyperparams(self, params, *args, **kwargs):
            self.calls.append({"call": "log_hyperparams", "params": _params_dict(params)})

        def log_graph(self, model, input_array=None):
            self.calls.append({"call": "log_graph"})

        def save(self):
            pass

        def finalize(self, status):
            self.calls.append({"call": "finalize", "status": str(getattr(status, "value", status))})

    return RecordingLogger


# ---------------------------------------------------------------------------
# data / model


def _loader(spec):
    n, batch_size, seed = spec
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN_FEATURES, generator=gen)
    y = torch.randn(n, 1, generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def _make_metric(kind):
    import torchmetrics

    return getattr(torchmetrics, kind)()


def make_logging_module(L, spec):
    """Build a LightningModule class on ``L`` for one scenario ``spec``.

    ``spec["hooks"]`` maps hook names (``training_step``, ``validation_step``,
    ``test_step``, ``on_train_epoch_end``, ``on_validation_epoch_end``) to
    ``fn(module, **ctx)`` doing the logging.  ``validation_step`` /
    ``test_step`` and their loaders exist only when the spec logs there.
    """
    hooks = spec.get("hooks", {})
    metrics = spec.get("metrics", {})
    val_loaders = spec.get("val_loaders", 1)

    class Base(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(IN_FEATURES, 1)
            gen = torch.Generator().manual_seed(WEIGHT_SEED)
            with torch.no_grad():
                self.layer.weight.copy_(torch.randn(1, IN_FEATURES, generator=gen))
                self.layer.bias.copy_(torch.randn(1, generator=gen))
            for attr, kind in metrics.items():
                setattr(self, attr, _make_metric(kind))

        def forward(self, x):
            return self.layer(x)

        def _loss(self, batch):
            x, y = batch
            return torch.nn.functional.mse_loss(self(x), y)

        def training_step(self, batch, batch_idx):
            loss = self._loss(batch)
            if "training_step" in hooks:
                hooks["training_step"](self, batch=batch, batch_idx=batch_idx, loss=loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

        def train_dataloader(self):
            return _loader(TRAIN_DATA)

    ns = {}
    if "validation_step" in hooks:

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            loss = self._loss(batch)
            hooks["validation_step"](self, batch=batch, batch_idx=batch_idx, loss=loss, dataloader_idx=dataloader_idx)
            return loss

        def val_dataloader(self):
            if val_loaders == 1:
                return _loader(VAL_DATA)
            return [_loader(VAL_DATA), _loader(VAL2_DATA)][:val_loaders]

        ns.update(validation_step=validation_step, val_dataloader=val_dataloader)

    if "test_step" in hooks:

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            loss = self._loss(batch)
            hooks["test_step"](self, batch=batch, batch_idx=batch_idx, loss=loss, dataloader_idx=dataloader_idx)
            return loss

        def test_dataloader(self):
            return _loader(TEST_DATA)

        ns.update(test_step=test_step, test_dataloader=test_dataloader)

    for hook in ("on_train_epoch_end", "on_validation_epoch_end"):
        if hook in hooks:

            def _epoch_hook(self, _fn=hooks[hook]):
                _fn(self)

            _epoch_hook.__name__ = hook
            ns[hook] = _epoch_hook

    Module = type("LoggingModule", (Base,), ns)

    if spec.get("hparams"):

        class HParamsModule(Module):
            def __init__(self, lr=0.1, tag="tiny"):
                super().__init__()
                self.save_hyperparameters()

        return HParamsModule
    return Module


# ---------------------------------------------------------------------------
# logging functions used by the scenarios (fn(module, **ctx))


def _train_default(m, batch_idx, loss, **_):
    m.log("a", float(batch_idx))
    m.log("loss", loss)


def _train_fork(m, batch_idx, loss, **_):
    m.log("a", float(batch_idx), on_step=True, on_epoch=True, prog_bar=True)
    m.log("loss", loss, on_step=True, on_epoch=True)


def _train_reduce(m, batch_idx, loss, **_):
    v = float(batch_idx) + 1.0  # 1, 2, 3 over batches of 4, 4, 2
    m.log("r_mean", v, on_step=False, on_epoch=True, reduce_fx="mean")
    m.log("r_sum", v, on_step=False, on_epoch=True, reduce_fx="sum")
    m.log("r_max", v, on_step=False, on_epoch=True, reduce_fx="max")
    m.log("r_min", v, on_step=False, on_epoch=True, reduce_fx="min")
    m.log("r_torch_max", v, on_step=False, on_epoch=True, reduce_fx=torch.max)
    m.log("loss_mean", loss, on_step=False, on_epoch=True)


def _train_batch_size(m, batch_idx, **_):
    v = float(batch_idx) + 1.0
    m.log("inferred", v, on_step=False, on_epoch=True)
    m.log("explicit", v, on_step=False, on_epoch=True, batch_size=1)
    m.log("explicit_step", v, on_step=True, on_epoch=True, batch_size=3)


def _val_default(m, batch_idx, loss, **_):
    m.log("v", float(batch_idx) + 1.0)  # 1, 2 over batches of 4, 2
    m.log("val_loss", loss)


def _val_on_step(m, batch_idx, loss, **_):
    m.log("v", float(batch_idx) + 1.0, on_step=True, prog_bar=True)
    m.log("val_loss", loss, prog_bar=True)


def _train_epoch_end(m):
    m.log("te", float(m.current_epoch) + 10.0)
    m.log("te_bar", float(m.current_epoch) + 20.0, prog_bar=True)


def _val_epoch_end(m):
    m.log("ve", float(m.current_epoch) + 30.0)


def _val_two_loaders(m, batch_idx, dataloader_idx, **_):
    m.log("v", float(batch_idx) + 1.0 + 10.0 * dataloader_idx)


def _val_two_loaders_no_idx(m, batch_idx, dataloader_idx, **_):
    m.log(f"v{dataloader_idx}", float(batch_idx) + 1.0 + 10.0 * dataloader_idx, add_dataloader_idx=False)


def _train_log_dict(m, batch_idx, loss, **_):
    m.log_dict({"d_a": float(batch_idx), "d_loss": loss}, on_step=True, on_epoch=True, prog_bar=True)


def _val_log_dict(m, batch_idx, loss, **_):
    m.log_dict({"vd_a": float(batch_idx) + 1.0, "vd_loss": loss})


def _test_log(m, batch_idx, loss, **_):
    m.log("t", float(batch_idx) + 1.0)
    m.log("t2", float(batch_idx) + 5.0, on_step=True)
    m.log("test_loss", loss, prog_bar=True)


def _train_metric(m, batch, batch_idx, **_):
    n = batch[0].shape[0]
    m.train_mean(torch.full((n,), float(batch_idx) + 1.0))  # forward: batch value
    m.log("tm", m.train_mean, on_step=True, on_epoch=True)


def _val_metric(m, batch_idx, **_):
    m.val_sum.update(torch.tensor(float(batch_idx) + 1.0))
    m.log("vm", m.val_sum, on_epoch=True)


# ---------------------------------------------------------------------------
# scenarios: name -> spec (entry point, logging hooks, extra Trainer kwargs)

_FIT2 = dict(max_epochs=2)

LOGGING_SCENARIOS = {
    # a. defaults in training_step (on_step=True, on_epoch=False)
    "train_default_every1": dict(
        entry="fit",
        hooks={"training_step": _train_default},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    "train_default_every2": dict(
        entry="fit",
        hooks={"training_step": _train_default},
        trainer=dict(_FIT2, log_every_n_steps=2),
    ),
    "train_default_every50": dict(entry="fit", hooks={"training_step": _train_default}, trainer=dict(_FIT2)),
    # b. on_step + on_epoch forking, prog_bar
    "train_fork_prog_bar": dict(
        entry="fit",
        hooks={"training_step": _train_fork},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # c. epoch-only reductions
    "train_reduce_fx": dict(
        entry="fit",
        hooks={"training_step": _train_reduce},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # d. explicit batch_size vs inferred
    "train_batch_size": dict(
        entry="fit",
        hooks={"training_step": _train_batch_size},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # e. validation logging during fit
    "val_default": dict(
        entry="fit",
        hooks={"training_step": _train_default, "validation_step": _val_default},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    "val_on_step_prog_bar": dict(
        entry="fit",
        hooks={"training_step": _train_fork, "validation_step": _val_on_step},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # f. epoch-level hooks
    "epoch_end_hooks": dict(
        entry="fit",
        hooks={
            "training_step": _train_default,
            "validation_step": _val_default,
            "on_train_epoch_end": _train_epoch_end,
            "on_validation_epoch_end": _val_epoch_end,
        },
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # g. two validation dataloaders
    "val_two_loaders": dict(
        entry="fit",
        hooks={"training_step": _train_default, "validation_step": _val_two_loaders},
        val_loaders=2,
        trainer=dict(max_epochs=1, log_every_n_steps=1),
    ),
    "val_two_loaders_no_idx": dict(
        entry="fit",
        hooks={"training_step": _train_default, "validation_step": _val_two_loaders_no_idx},
        val_loaders=2,
        trainer=dict(max_epochs=1, log_every_n_steps=1),
    ),
    "validate_two_loaders": dict(entry="validate", hooks={"validation_step": _val_two_loaders}, val_loaders=2),
    # h. log_dict
    "log_dict": dict(
        entry="fit",
        hooks={"training_step": _train_log_dict, "validation_step": _val_log_dict},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # i. standalone validate / test (a module without hparams gets no log_hyperparams call)
    "validate_standalone": dict(entry="validate", hooks={"validation_step": _val_on_step}),
    "validate_standalone_hparams": dict(
        entry="validate",
        hooks={"validation_step": _val_default, "on_validation_epoch_end": _val_epoch_end},
        hparams=True,
    ),
    "test_standalone_hparams": dict(entry="test", hooks={"test_step": _test_log}, hparams=True),
    # fit, then validate and test on the same Trainer (steps / hparams on the later calls)
    "fit_then_validate_test": dict(
        entry=("fit", "validate", "test"),
        hooks={"training_step": _train_default, "validation_step": _val_on_step, "test_step": _test_log},
        hparams=True,
        trainer=dict(max_epochs=1, log_every_n_steps=1),
    ),
    # j. torchmetrics objects
    "torchmetrics": dict(
        entry="fit",
        hooks={"training_step": _train_metric, "validation_step": _val_metric},
        metrics={"train_mean": "MeanMetric", "val_sum": "SumMetric"},
        trainer=dict(_FIT2, log_every_n_steps=1),
    ),
    # k. save_hyperparameters -> log_hyperparams
    "hparams": dict(
        entry="fit",
        hooks={"training_step": _train_default},
        hparams=True,
        trainer=dict(max_epochs=1, log_every_n_steps=1),
    ),
}

TORCHMETRICS_SCENARIOS = ("torchmetrics",)


def base_trainer_kwargs(logger, root_dir):
    return dict(
        logger=[logger],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root_dir),
        accelerator="cpu",
        devices=1,
    )


def run_logging_scenario(L, name, root_dir):
    """Run scenario ``name`` with framework ``L`` and return the recorded dict."""
    spec = LOGGING_SCENARIOS[name]
    Module = make_logging_module(L, spec)
    logger = make_recording_logger(L)()
    model = Module()
    trainer = L.Trainer(**base_trainer_kwargs(logger, root_dir), **spec.get("trainer", {}))
    entries = spec["entry"] if isinstance(spec["entry"], tuple) else (spec["entry"],)
    for entry in entries:
        returned = getattr(trainer, entry)(model)
    out = {
        "logger_calls": logger.calls,
        "callback_metrics": _rounded(trainer.callback_metrics),
        "logged_metrics": _rounded(trainer.logged_metrics),
        "progress_bar_metrics": _rounded(trainer.progress_bar_metrics),
    }
    if entries[-1] in ("validate", "test"):
        out["returned"] = [_rounded(d) for d in returned]
    return out


def run_logging_scenarios(L, root_dir, names=None):
    """Run every scenario (or just ``names``) and return ``{name: result}``."""
    return {name: run_logging_scenario(L, name, root_dir) for name in (names or LOGGING_SCENARIOS)}
